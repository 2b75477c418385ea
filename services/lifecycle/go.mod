module github.com/leadflow/leadflow/services/lifecycle

go 1.26.0
