package lead

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Import limits.
const (
	// ImportBatchSize is how many good rows one transaction stores.
	ImportBatchSize = 500
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
type Import struct {
	svc      *Service
	ws       string
	source   string
	campaign string
	rows     int
	maxRows  int
	batch    []Capture
	summary  ImportSummary
}

// NewImport starts an import into workspace ws. source and campaign apply
// to rows that name none.
func (s *Service) NewImport(ws, source, campaign string) (*Import, error) {
	source, campaign = clean(source), clean(campaign)
	var v violations
	v.prefix = "options."
	if len(source) > MaxTextLen {
		v.add("source", fmt.Sprintf("must be at most %d characters", MaxTextLen))
	}
	if len(campaign) > MaxTextLen {
		v.add("campaign", fmt.Sprintf("must be at most %d characters", MaxTextLen))
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if source == "" {
		source = DefaultImportSource
	}
	return &Import{svc: s, ws: ws, source: source, campaign: campaign, maxRows: MaxImportRows}, nil
}

// Add validates one row and queues it, storing a full batch. It fails only
// for a broken import (too many rows, a storage failure), never for a bad
// row.
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
	im.batch = append(im.batch, Capture{Lead: l, Channel: ChannelImport})
	if len(im.batch) >= ImportBatchSize {
		return im.flush(ctx)
	}
	return nil
}

// Reject counts a row as failed and reports why: its first field violation,
// with any others appended to the reason.
func (im *Import) Reject(line int64, err error) {
	im.summary.Failed++
	if len(im.summary.Errors) >= MaxImportErrors {
		return
	}
	ie := ImportError{Line: line, Reason: err.Error()}
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

func (im *Import) flush(ctx context.Context) error {
	if len(im.batch) == 0 {
		return nil
	}
	outs, err := im.svc.store.Capture(ctx, im.ws, im.batch)
	if err != nil {
		return err
	}
	for _, o := range outs {
		if o.Created {
			im.summary.Created++
		} else {
			im.summary.Updated++
		}
	}
	im.batch = im.batch[:0]
	return nil
}

// Finish stores the last batch and returns the summary.
func (im *Import) Finish(ctx context.Context) (ImportSummary, error) {
	if err := im.flush(ctx); err != nil {
		return ImportSummary{}, err
	}
	return im.summary, nil
}
