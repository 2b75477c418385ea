package gateway

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
)

// importPath is the CSV upload endpoint. grpc-gateway cannot map a CSV body
// onto the ImportLeads client stream, so the gateway streams it itself.
const importPath = "/v1/leads:import"

// maxImportErrors bounds the errors the gateway itself reports (rows it
// could not even turn into a lead); ingestion bounds its own.
const maxImportErrors = 1000

// csvImporter streams an uploaded CSV into IngestionService.ImportLeads.
// The header row names lead fields in either proto (first_name) or JSON
// (firstName) spelling; any other column becomes a custom attribute, never
// dropped. Rows are streamed as they are read, so memory stays flat.
type csvImporter struct {
	ingestion ingestionv1.IngestionServiceClient
	maxBytes  int64
}

// importable are the Lead fields a CSV column may fill: everything a
// client may set, nothing the service computes.
var importable = func() map[string]protoreflect.FieldDescriptor {
	out := map[string]protoreflect.FieldDescriptor{}
	fields := (&ingestionv1.Lead{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Kind() != protoreflect.StringKind && f.Kind() != protoreflect.Int32Kind || f.IsList() || f.IsMap() {
			continue
		}
		switch f.Name() {
		case "name", "company_domain", "account", "etag":
			continue
		}
		out[string(f.Name())] = f
		out[f.JSONName()] = f
	}
	return out
}()

func (c *csvImporter) serve(w http.ResponseWriter, r *http.Request) {
	// A declared size over the limit is refused before anything is stored.
	// An undeclared (chunked) one is cut at the limit; the rows streamed by
	// then stay stored, as re-running an import is harmless (captures
	// deduplicate by email).
	if r.ContentLength > c.maxBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("CSV larger than %d bytes; split it into several uploads", c.maxBytes))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, c.maxBytes)
	ctx := metadata.NewOutgoingContext(r.Context(), metadata.Pairs(
		"authorization", r.Header.Get("Authorization"),
		"x-forwarded-for", clientIP(r),
	))
	stream, err := c.ingestion.ImportLeads(ctx)
	if err != nil {
		writeGRPCError(w, err)
		return
	}
	q := r.URL.Query()
	if err := stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Options{
		Options: &ingestionv1.ImportOptions{Source: q.Get("source"), Campaign: q.Get("campaign")},
	}}); err != nil && !errors.Is(err, io.EOF) {
		writeGRPCError(w, err)
		return
	}

	own, readErr := c.sendRows(r.Body, stream)
	resp, err := stream.CloseAndRecv()
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(readErr, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("CSV larger than %d bytes; split it into several uploads", c.maxBytes))
		return
	case readErr != nil:
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, readErr.Error())
		return
	case err != nil:
		writeGRPCError(w, err)
		return
	}
	resp.Failed += int64(len(own))
	resp.Errors = append(resp.Errors, own...)
	slices.SortStableFunc(resp.Errors, func(a, b *ingestionv1.ImportError) int { return int(a.Line - b.Line) })
	body, err := (&runtime.JSONPb{}).Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// sendRows reads the CSV and streams its rows. It returns the rows it
// refused itself (a column it could not parse), and an error only when the
// upload as a whole is unusable.
func (c *csvImporter) sendRows(body io.Reader, stream ingestionv1.IngestionService_ImportLeadsClient) ([]*ingestionv1.ImportError, error) {
	cr := csv.NewReader(body)
	cr.FieldsPerRecord = -1 // ragged rows are reported per row, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the CSV is empty: the first row must name the columns")
		}
		return nil, fmt.Errorf("read the CSV header: %w", err)
	}
	header = slices.Clone(header)
	for i, h := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
	}
	if slices.ContainsFunc(header, func(h string) bool { return !utf8.ValidString(h) }) {
		return nil, errors.New("the header row must be UTF-8 text")
	}
	if !slices.ContainsFunc(header, func(h string) bool { return strings.EqualFold(h, "email") }) {
		return nil, errors.New(`the header row has no "email" column`)
	}

	var own []*ingestionv1.ImportError
	refuse := func(line int64, field, reason string) {
		if len(own) < maxImportErrors {
			own = append(own, &ingestionv1.ImportError{Line: line, Field: field, Reason: reason})
		}
	}
	// Rows go rowsPerMessage to a message: a message per row costs the
	// service more than the row itself.
	batch := &ingestionv1.ImportRows{}
	// flush sends the rows gathered so far; ended reports the service ended
	// the stream (e.g. over its row limit), whose status arrives with
	// CloseAndRecv.
	flush := func() (ended bool, err error) {
		if len(batch.Rows) == 0 {
			return false, nil
		}
		err = stream.Send(&ingestionv1.ImportLeadsRequest{Item: &ingestionv1.ImportLeadsRequest_Rows{Rows: batch}})
		batch = &ingestionv1.ImportRows{}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, err
	}
	for {
		record, err := cr.Read()
		if errors.Is(err, io.EOF) {
			_, err := flush()
			return own, err
		}
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			refuse(int64(perr.StartLine), "", "malformed CSV: "+perr.Err.Error())
			continue
		}
		if err != nil {
			return own, err
		}
		line, _ := cr.FieldPos(0)
		if len(record) != len(header) {
			refuse(int64(line), "", fmt.Sprintf("has %d columns, the header has %d", len(record), len(header)))
			continue
		}
		lead, field, reason := leadFromRecord(header, record)
		if lead == nil {
			refuse(int64(line), field, reason)
			continue
		}
		batch.Rows = append(batch.Rows, &ingestionv1.ImportRow{Line: int64(line), Lead: lead})
		if len(batch.Rows) < rowsPerMessage {
			continue
		}
		if ended, err := flush(); ended || err != nil {
			return own, err
		}
	}
}

// rowsPerMessage is how many rows the gateway sends in one ImportRows
// message (the service takes up to 1,000).
const rowsPerMessage = 500

// leadFromRecord maps one row onto a Lead, or names the field it could not
// read.
func leadFromRecord(header, record []string) (lead *ingestionv1.Lead, field, reason string) {
	lead = &ingestionv1.Lead{}
	m := lead.ProtoReflect()
	for i, h := range header {
		v := strings.TrimSpace(record[i])
		if v == "" || h == "" {
			continue
		}
		if !utf8.ValidString(v) {
			return nil, h, "must be UTF-8 text"
		}
		f, ok := importable[h]
		if !ok {
			if lead.CustomAttributes == nil {
				lead.CustomAttributes = map[string]string{}
			}
			lead.CustomAttributes[h] = v
			continue
		}
		switch f.Kind() {
		case protoreflect.Int32Kind:
			n, err := strconv.ParseInt(strings.ReplaceAll(v, ",", ""), 10, 32)
			if err != nil {
				return nil, h, "must be a whole number"
			}
			m.Set(f, protoreflect.ValueOfInt32(int32(n)))
		default:
			m.Set(f, protoreflect.ValueOfString(v))
		}
	}
	return lead, "", ""
}
