package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// writeError answers with a JSON google.rpc.Status, the shape every REST
// error of Leadflow has.
func writeError(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": int(code), "message": msg, "details": []any{}})
}

// httpStatus maps a gRPC code to the HTTP status every route answers with:
// grpc-gateway's mapping, except that a refused precondition (a guard such
// as "SQL requires BANT") is 412 Precondition Failed rather than a generic
// 400, so clients can tell it from a malformed request.
func httpStatus(code codes.Code) int {
	if code == codes.FailedPrecondition {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(code)
}

// retryAfterUnavailable is the Retry-After, in seconds, sent with a 503: a
// backend or its database restarting is usually back within seconds, and
// clients back off further on their own if it is not.
const retryAfterUnavailable = "1"

// setRetryAfter tells the client when to retry an UNAVAILABLE answer.
func setRetryAfter(w http.ResponseWriter, code codes.Code) {
	if code == codes.Unavailable {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
}

// errorHandler is grpc-gateway's error handler with httpStatus's mapping.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	code := status.Code(err)
	if httpStatus(code) != runtime.HTTPStatusFromCode(code) {
		err = &runtime.HTTPStatusError{HTTPStatus: httpStatus(code), Err: err}
	}
	setRetryAfter(w, code)
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// writeGRPCError answers with a backend's gRPC error, mapped the way every
// other route maps it (details included).
func writeGRPCError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	body, mErr := (&runtime.JSONPb{}).Marshal(st.Proto())
	if mErr != nil {
		writeError(w, http.StatusInternalServerError, codes.Internal, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	setRetryAfter(w, st.Code())
	w.WriteHeader(httpStatus(st.Code()))
	_, _ = w.Write(body)
}

// clientIP is the address a request came from. X-Forwarded-For is believed
// only when the gateway sits behind a proxy that sets it (trustForwarded);
// otherwise anyone could claim any address and dodge per-IP limits.
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientIPKey struct{}

// resolveClientIP decides the client address once per request and rewrites
// X-Forwarded-For to just that address, which grpc-gateway then forwards to
// the services as metadata.
func resolveClientIP(r *http.Request, trustForwarded bool) *http.Request {
	ip := clientIP(r)
	if trustForwarded {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if parsed := net.ParseIP(strings.TrimSpace(first)); parsed != nil {
				ip = parsed.String()
			}
		}
	}
	r.Header.Del("X-Forwarded-For")
	r.Header.Set("X-Forwarded-For", ip)
	return r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip))
}

// limitBody reads at most limit bytes of the body; a larger body is answered
// 413 and false is returned. The body is buffered so the handler sees it whole.
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, fmt.Sprintf("request body larger than %d bytes", limit))
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "could not read request body")
		return false
	}
	if int64(len(buf)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, fmt.Sprintf("request body larger than %d bytes", limit))
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return true
}
