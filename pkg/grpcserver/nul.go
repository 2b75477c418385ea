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
	walkStrings(m.ProtoReflect(), nil, func(at *fieldPath, s string) bool {
		if strings.IndexByte(s, 0) >= 0 {
			opts = append(opts, apperr.Field(at.String(), "must not contain NUL characters"))
		}
		return len(opts) < maxNULViolations
	})
	if len(opts) == 0 {
		return nil
	}
	return apperr.InvalidArgument("text must not contain NUL characters", opts...)
}

// fieldPath is where a value sits in a request, spelled out only for a
// violation: most requests have none, and every list element would
// otherwise cost a formatted string.
type fieldPath struct {
	parent *fieldPath
	name   string // the field, for a field
	index  int    // the element, for a list element (name empty)
	key    string // the key, for a map value (name empty, index -1)
}

// String names the path as protovalidate names fields: "rows[2].lead.title",
// `custom_attributes["key"]`.
func (p *fieldPath) String() string {
	if p == nil {
		return ""
	}
	switch {
	case p.name != "" && p.parent != nil:
		return p.parent.String() + "." + p.name
	case p.name != "":
		return p.name
	case p.index >= 0:
		return fmt.Sprintf("%s[%d]", p.parent, p.index)
	default:
		return fmt.Sprintf("%s[%q]", p.parent, p.key)
	}
}

// walkStrings calls visit with every string in m (map keys included) and
// where it is, until visit returns false.
func walkStrings(m protoreflect.Message, at *fieldPath, visit func(at *fieldPath, s string) bool) bool {
	more := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		field := &fieldPath{parent: at, name: string(fd.Name())}
		switch {
		case fd.IsList():
			list := v.List()
			for i := 0; i < list.Len() && more; i++ {
				more = walkValue(fd, list.Get(i), &fieldPath{parent: field, index: i}, visit)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				entry := &fieldPath{parent: field, index: -1, key: key}
				if fd.MapKey().Kind() == protoreflect.StringKind {
					more = visit(entry, key)
				}
				if more {
					more = walkValue(fd.MapValue(), mv, entry, visit)
				}
				return more
			})
		default:
			more = walkValue(fd, v, field, visit)
		}
		return more
	})
	return more
}

// walkValue visits one value of fd: a string, or a message to walk.
func walkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, at *fieldPath, visit func(at *fieldPath, s string) bool) bool {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return visit(at, v.String())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return walkStrings(v.Message(), at, visit)
	}
	return true
}
