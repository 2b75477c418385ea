module github.com/leadflow/leadflow/services/ingestion

go 1.26.0

require (
	github.com/biter777/countries v1.7.5 // indirect
	github.com/nyaruka/phonenumbers v1.8.1 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
