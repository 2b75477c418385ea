// Package deploy holds Leadflow's Kubernetes manifests: a kustomize base with
// one folder per service, optional components (network policies, an
// OpenTelemetry Collector) and the dev and prod overlays, plus the Dockerfile
// the images are built from.
//
// The package has no Go API. Its test renders every overlay offline with the
// kustomize API, strict-decodes every object with client-go's scheme (so a
// misspelt field fails like the API server would reject it) and checks the
// house rules: resources and GOMEMLIMIT, non-root read-only pods, native gRPC
// probes, credentials only from Secrets, Service ports named grpc and http,
// and no Secret data outside the dev overlay. See README.md.
package deploy
