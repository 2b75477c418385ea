package grpcserver

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// maxNULViolations bounds the field violations one request reports.
const maxNULViolations = 20

// checkNUL refuses a request with a NUL character in any string, at any
// depth: PostgreSQL's text cannot hold one, so it would otherwise fail in
// the database, as a server error, and only after the request did other
// work. Protocol Buffers allow it in strings; no field of ours means one.
func checkNUL(m proto.Message) error {
	var opts []apperr.Option
	walkStrings(m.ProtoReflect(), "", func(path, s string) bool {
		if strings.IndexByte(s, 0) >= 0 {
			opts = append(opts, apperr.Field(path, "must not contain NUL characters"))
		}
		return len(opts) < maxNULViolations
	})
	if len(opts) == 0 {
		return nil
	}
	return apperr.InvalidArgument("text must not contain NUL characters", opts...)
}

// walkStrings calls visit with every string in m (map keys included) and
// its path, named as protovalidate names fields ("rows[2].lead.title",
// `custom_attributes["key"]`), until visit returns false.
func walkStrings(m protoreflect.Message, prefix string, visit func(path, s string) bool) bool {
	more := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len() && more; i++ {
				more = walkValue(fd, list.Get(i), fmt.Sprintf("%s[%d]", name, i), visit)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				path := fmt.Sprintf("%s[%q]", name, key)
				if fd.MapKey().Kind() == protoreflect.StringKind {
					more = visit(path, key)
				}
				if more {
					more = walkValue(fd.MapValue(), mv, path, visit)
				}
				return more
			})
		default:
			more = walkValue(fd, v, name, visit)
		}
		return more
	})
	return more
}

// walkValue visits one value of fd: a string, or a message to walk.
func walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string, visit func(path, s string) bool) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return visit(path, v.String())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walkStrings(v.Message(), path+".", visit)
	}
	return true
}
