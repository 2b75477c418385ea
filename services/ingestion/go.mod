module github.com/leadflow/leadflow/services/ingestion

go 1.26.0
