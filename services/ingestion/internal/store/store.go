// Package store is the PostgreSQL implementation of lead.Store. Every change
// it makes publishes its events through the transactional outbox in the same
// transaction, so other services learn of exactly the changes that commit.
package store

import (
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/outbox"
	"github.com/leadflow/leadflow/pkg/service"
	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// Schema is the PostgreSQL schema the ingestion service owns.
const Schema = "ingestion"

// Migrations are the service's numbered SQL migrations;
// pkg/migrate finds the files under migrations/.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// Routes sends every lead event to the services that keep state per lead.
func Routes() outbox.Routes {
	subscribers := []string{service.Scoring, service.Lifecycle, service.Handoff}
	routes := outbox.Routes{}
	for _, payload := range []proto.Message{
		&eventsv1.LeadCaptured{}, &eventsv1.LeadUpdated{}, &eventsv1.LeadMerged{},
		&eventsv1.LeadErased{}, &eventsv1.ActivityRecorded{},
	} {
		typ, subs := outbox.Route(payload, subscribers...)
		routes[typ] = subs
	}
	return routes
}

// Store implements lead.Store.
type Store struct {
	pool     *pgxpool.Pool
	pub      *outbox.Publisher
	now      func() time.Time
	accounts knownAccounts
}

// New returns a Store over pool, whose search_path must be Schema, publishing
// through pub.
func New(pool *pgxpool.Pool, pub *outbox.Publisher) *Store {
	return &Store{pool: pool, pub: pub, now: func() time.Time {
		// PostgreSQL keeps microseconds; so do cursors and etags.
		return time.Now().UTC().Truncate(time.Microsecond)
	}}
}

// NewPublisher returns the outbox publisher of the ingestion service.
func NewPublisher() *outbox.Publisher {
	return outbox.NewPublisher(service.Ingestion, Schema, Routes())
}

// newID returns a time-ordered UUID, which keeps index inserts local.
// binaryUUID is id as pgx sends it in binary. pgx encodes a string into a
// uuid only after failing at binary and formatting the error, which for a
// bulk write's arrays costs more than the statement. An id that does not
// parse, such as "" for none, is NULL.
func binaryUUID(id string) pgtype.UUID {
	u, err := uuid.Parse(id)
	return pgtype.UUID{Bytes: u, Valid: err == nil}
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// validID reports whether id can name a row; other ids name nothing.
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// notFound maps pgx.ErrNoRows to errNotFound and passes other errors on.
func notFound(err, errNotFound error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	return err
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

var _ lead.Store = (*Store)(nil)
