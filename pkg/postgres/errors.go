package postgres

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes the services rely on (PostgreSQL manual, appendix A).
const (
	NotNullViolation     = "23502"
	ForeignKeyViolation  = "23503"
	UniqueViolation      = "23505"
	CheckViolation       = "23514"
	ExclusionViolation   = "23P01"
	SerializationFailure = "40001"
	DeadlockDetected     = "40P01"
	LockNotAvailable     = "55P03"
	QueryCanceled        = "57014"
)

// SQLState returns the SQLSTATE of the PostgreSQL error in err's chain, or "".
func SQLState(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code
	}
	return ""
}

// IsUniqueViolation reports whether err is a unique_violation: the row exists.
func IsUniqueViolation(err error) bool { return SQLState(err) == UniqueViolation }

// IsForeignKeyViolation reports whether err is a foreign_key_violation.
func IsForeignKeyViolation(err error) bool { return SQLState(err) == ForeignKeyViolation }

// IsCheckViolation reports whether err is a check_violation.
func IsCheckViolation(err error) bool { return SQLState(err) == CheckViolation }

// IsRetryable reports whether the whole transaction that failed with err may
// succeed when run again: a serialization failure or a deadlock.
func IsRetryable(err error) bool {
	switch SQLState(err) {
	case SerializationFailure, DeadlockDetected:
		return true
	}
	return false
}

// ConstraintName returns the name of the constraint that err violated, or "".
// Map it to a domain error, say which field clashed, but never echo the
// error's detail, which quotes the offending values.
func ConstraintName(err error) string {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.ConstraintName
	}
	return ""
}
