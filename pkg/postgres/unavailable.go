package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs of a server that will not serve this connection, now or any more
// (PostgreSQL manual, appendix A).
const (
	// connectionExceptionClass is class 08, connection exceptions.
	connectionExceptionClass = "08"
	// ProtocolViolation is in class 08 but means a client bug: retrying the
	// same messages fails the same way.
	ProtocolViolation  = "08P01"
	TooManyConnections = "53300"
	AdminShutdown      = "57P01" // pg_terminate_backend, or a fast or immediate shutdown
	CrashShutdown      = "57P02" // another backend crashed; the server is resetting
	CannotConnectNow   = "57P03" // starting up, shutting down or in recovery
	IdleSessionTimeout = "57P05"
)

// IsUnavailable reports whether err says that the database could not be
// reached or that the connection to it was lost: a failed connection attempt
// (connection refused, server starting up or shutting down, too many
// connections), a connection closed or reset under a statement, a server
// terminating the session, or any network error. It looks through every
// layer of wrapping. A transaction that failed so may succeed when retried
// once the database is back.
//
// An error that is, or wraps, context.Canceled or context.DeadlineExceeded
// is not one: the caller gave up, which says nothing about the database.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// Whatever failed the attempt, even an authentication error from a
	// server in the middle of a restart, no connection could be had.
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	if isUnavailableState(SQLState(err)) {
		return true
	}
	// Loss of the connection as the driver and the network see it: pgx
	// reports a connection it has closed (after a failed read or write) as
	// ErrConnClosed, and a socket the server closed as EOF.
	if errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	return false
}

func isUnavailableState(state string) bool {
	switch state {
	case "":
		return false
	case ProtocolViolation:
		return false
	case TooManyConnections, AdminShutdown, CrashShutdown, CannotConnectNow, IdleSessionTimeout:
		return true
	}
	return strings.HasPrefix(state, connectionExceptionClass)
}
