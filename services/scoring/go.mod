module github.com/leadflow/leadflow/services/scoring

go 1.26.0

require cel.dev/cel-go v0.33.2
