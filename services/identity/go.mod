module github.com/leadflow/leadflow/services/identity

go 1.26.0
