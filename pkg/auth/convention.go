package auth

import (
	"strings"

	"google.golang.org/grpc"
)

// readVerbs are method-name prefixes that only read.
var readVerbs = []string{"Get", "List", "Export", "Download", "Backtest"}

// ByVerb builds a policy for every method of a service: methods named like
// reads (Get…, List…, Export…, Download…, Backtest…) need readScope, all
// others writeScope. Merge exceptions (public or internal methods) on top.
func ByVerb(sd grpc.ServiceDesc, readScope, writeScope string) Policy {
	p := Policy{}
	add := func(method string) {
		scope := writeScope
		for _, v := range readVerbs {
			if strings.HasPrefix(method, v) {
				scope = readScope
				break
			}
		}
		p["/"+sd.ServiceName+"/"+method] = Access{Scope: scope}
	}
	for _, m := range sd.Methods {
		add(m.MethodName)
	}
	for _, s := range sd.Streams {
		add(s.StreamName)
	}
	return p
}
