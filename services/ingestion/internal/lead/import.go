package lead

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Import limits and tuning.
const (
	// ImportBatchSize is the most good rows one transaction stores. A
	// writer's first batch is importFirstBatch rows and each next one
	// doubles up to it: the database starts work early in a stream, and
	// later batches spread PostgreSQL's cost per COPY and transaction over
	// more rows.
	ImportBatchSize  = 4000
	importFirstBatch = 500
	// ImportWriters is how many batches of one import are stored at once,
	// each in its own transaction. Rows are spread over the writers by
	// email, so the rows of one email are stored in file order.
	ImportWriters = 2
	// MaxImportRows bounds the rows of one import stream.
	MaxImportRows = 100_000
	// MaxImportErrors bounds the row errors an import reports; failed rows
	// beyond it are still counted.
	MaxImportErrors = 1000
	// DefaultImportSource is the source of imported rows that name none.
	DefaultImportSource = "import"
)

// ImportError reports one rejected row.
type ImportError struct {
	Line   int64
	Field  string
	Reason string
}

// ImportSummary is the result of an import.
type ImportSummary struct {
	Created int64
	Updated int64
	Failed  int64
	Errors  []ImportError
}

// Import stores rows in batches as they arrive. Rows are validated one by
// one: a bad row is reported and skipped, the good ones are stored. Batches
// commit as they fill, so an import that fails halfway keeps the rows of
// its committed batches; re-running it is safe, as captures deduplicate by
// email.
//
// Rows are spread over ImportWriters writers by email, each storing its
// batches in order while the next rows are read and validated: the database
// works on several batches at once, and the rows of one email still apply in
// file order. An Import is used by one goroutine; call Finish, or Close to
// give up.
type Import struct {
	svc       *Service
	ws        string
	source    string
	campaign  string
	rows      int
	maxRows   int
	batchSize int         // the largest batch: ImportBatchSize
	pending   [][]Capture // per writer, not yet handed over
	limit     []int       // per writer, the rows of its next batch
	writers   []*importWriter
	group     *errgroup.Group
	groupCtx  context.Context
	cancel    context.CancelFunc
	err       error // the writers' failure, which ends the import
	summary   ImportSummary
}

// importWriter stores the batches of one share of the emails, in order.
type importWriter struct {
	batches          chan []Capture
	created, updated int64 // read after the group is done
}

// NewImport starts an import into workspace ws. source and campaign apply
// to rows that name none.
func (s *Service) NewImport(ws, source, campaign string) (*Import, error) {
	source, campaign = clean(source), clean(campaign)
	var v violations
	v.prefix = "options."
	for _, f := range []struct{ name, val string }{{"source", source}, {"campaign", campaign}} {
		switch {
		case len(f.val) > MaxTextLen:
			v.add(f.name, fmt.Sprintf("must be at most %d characters", MaxTextLen))
		case strings.IndexByte(f.val, 0) >= 0:
			v.add(f.name, noNUL)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if source == "" {
		source = DefaultImportSource
	}
	return &Import{
		svc: s, ws: ws, source: source, campaign: campaign, maxRows: MaxImportRows,
		batchSize: ImportBatchSize, pending: make([][]Capture, ImportWriters), limit: make([]int, ImportWriters),
	}, nil
}

// Add validates one row and queues it, handing a full batch to its writer.
// It fails only for a broken import (too many rows, a storage failure),
// never for a bad row.
func (im *Import) Add(ctx context.Context, line int64, l Lead) error {
	im.rows++
	if im.rows > im.maxRows {
		return ErrTooManyRows
	}
	if l.Source == "" {
		l.Source = im.source
	}
	if l.Campaign == "" {
		l.Campaign = im.campaign
	}
	if err := Normalize(&l, ""); err != nil {
		im.Reject(line, err)
		return nil
	}
	w := writerOf(l.Email, len(im.pending))
	im.pending[w] = append(im.pending[w], Capture{Lead: l, Channel: ChannelImport})
	if len(im.pending[w]) >= im.nextBatch(w) {
		return im.hand(ctx, w)
	}
	return nil
}

// nextBatch is how many rows writer w's next batch takes.
func (im *Import) nextBatch(w int) int {
	if im.limit[w] == 0 {
		im.limit[w] = min(importFirstBatch, im.batchSize)
	}
	return im.limit[w]
}

// writerOf spreads emails over n writers (FNV-1a).
func writerOf(email string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(email))
	return int(h.Sum32() % uint32(n))
}

// start runs the writers, once, under ctx.
func (im *Import) start(ctx context.Context) {
	if im.group != nil {
		return
	}
	ctx, im.cancel = context.WithCancel(ctx)
	im.group, im.groupCtx = errgroup.WithContext(ctx)
	im.writers = make([]*importWriter, len(im.pending))
	for i := range im.writers {
		// One batch may wait while the writer stores the one before it.
		w := &importWriter{batches: make(chan []Capture, 1)}
		im.writers[i] = w
		im.group.Go(func() error { return im.write(im.groupCtx, w) })
	}
}

// write stores w's batches in order until they end or one fails.
func (im *Import) write(ctx context.Context, w *importWriter) error {
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case batch, ok := <-w.batches:
			if !ok {
				return nil
			}
			outs, err := im.svc.store.Capture(ctx, im.ws, batch)
			if err != nil {
				return err
			}
			for _, o := range outs {
				if o.Created {
					w.created++
				} else {
					w.updated++
				}
			}
		}
	}
}

// hand gives writer w its pending batch. When a writer has failed, it
// returns that writer's error.
func (im *Import) hand(ctx context.Context, w int) error {
	if im.err != nil {
		return im.err
	}
	batch := im.pending[w]
	if len(batch) == 0 {
		return nil
	}
	im.start(ctx)
	im.limit[w] = min(2*im.nextBatch(w), im.batchSize)
	im.pending[w] = make([]Capture, 0, im.limit[w])
	select {
	case im.writers[w].batches <- batch:
		return nil
	case <-im.groupCtx.Done():
		return im.stop()
	}
}

// stop ends the writers and returns the first error of any.
func (im *Import) stop() error {
	if im.group == nil {
		return nil
	}
	for _, w := range im.writers {
		close(w.batches)
	}
	im.err = im.group.Wait()
	im.cancel()
	im.group = nil
	return im.err
}

// Reject counts a row as failed and reports why: its first field violation,
// with any others appended to the reason.
func (im *Import) Reject(line int64, err error) {
	im.summary.Failed++
	if len(im.summary.Errors) >= MaxImportErrors {
		return
	}
	// Only the error vocabulary's public messages reach the client; anything
	// else could carry SQL or internal detail.
	ie := ImportError{Line: line, Reason: "internal error"}
	if e, ok := errors.AsType[*apperr.Error](err); ok {
		ie.Reason = e.Message()
		if fv := e.FieldViolations(); len(fv) > 0 {
			ie.Field, ie.Reason = fv[0].Field, fv[0].Description
			var more []string
			for _, v := range fv[1:] {
				more = append(more, v.Field+" "+v.Description)
			}
			if len(more) > 0 {
				ie.Reason += "; also " + strings.Join(more, "; ")
			}
		}
	}
	im.summary.Errors = append(im.summary.Errors, ie)
}

// Finish stores the remaining rows and returns the summary once every
// batch is stored.
func (im *Import) Finish(ctx context.Context) (ImportSummary, error) {
	for w := range im.pending {
		if err := im.hand(ctx, w); err != nil {
			return ImportSummary{}, err
		}
	}
	writers := im.writers
	if err := im.stop(); err != nil {
		return ImportSummary{}, err
	}
	for _, w := range writers {
		im.summary.Created += w.created
		im.summary.Updated += w.updated
	}
	return im.summary, nil
}

// Close gives up an unfinished import: batches not yet committed are
// abandoned, and Close returns once no writer runs. It is safe after Finish.
func (im *Import) Close() {
	if im.group == nil {
		return
	}
	im.cancel()
	_ = im.stop()
}
