// Package gen holds Leadflow's generated code: Go, gRPC and grpc-gateway code
// under go/, and the merged OpenAPI description under openapi/. Everything here
// except this file, go.mod, go.sum and openapi/embed.go is written by
// `make generate` and must never be edited by hand.
package gen
