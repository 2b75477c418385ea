// Package ui is the small web interface the gateway serves under /ui/: a
// demo form that posts to the public endpoint, a lead view (details, score
// explanation, stage history, handoff) and a funnel dashboard, plus a
// readable API reference at /docs. It is plain HTML and JavaScript over the
// public REST API, with no build step, so what it shows is what any
// frontend would get.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the UI; mount it at /ui/ (and /docs).
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "same-origin")
		switch r.URL.Path {
		case "/docs", "/docs/":
			r.URL.Path = "/docs.html"
		case "/ui/thanks":
			r.URL.Path = "/thanks.html"
		default:
			r.URL.Path = r.URL.Path[len("/ui"):]
		}
		files.ServeHTTP(w, r)
	})
}
