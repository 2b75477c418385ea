module github.com/leadflow/leadflow/services/gateway

go 1.26.0
