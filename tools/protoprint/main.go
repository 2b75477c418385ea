// Command protoprint writes the .proto sources of the third-party schemas that
// Leadflow's protos import (google/api/* and buf/validate/validate.proto).
//
// No Go module ships those .proto files, and the Buf Schema Registry is out of
// reach, so they are printed back from the compiled descriptors that pinned Go
// modules embed. The printed files lose their comments but describe exactly the
// same types, which is all buf needs to compile against them.
package main

import (
	"flag"
	"fmt"
	"os"

	validatepb "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/jhump/protoreflect/v2/protoprint"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func main() {
	out := flag.String("out", "third_party", "directory to write the .proto files into")
	flag.Parse()

	files := []protoreflect.FileDescriptor{
		annotations.File_google_api_annotations_proto,
		annotations.File_google_api_http_proto,
		annotations.File_google_api_field_behavior_proto,
		annotations.File_google_api_resource_proto,
		httpbody.File_google_api_httpbody_proto,
		validatepb.File_buf_validate_validate_proto,
	}
	printer := protoprint.Printer{}
	if err := printer.PrintProtosToFileSystem(files, *out); err != nil {
		fmt.Fprintln(os.Stderr, "protoprint:", err)
		os.Exit(1)
	}
}
