module github.com/leadflow/leadflow/services/handoff

go 1.26.0
