module github.com/leadflow/leadflow/cmd/leadflow

go 1.26
