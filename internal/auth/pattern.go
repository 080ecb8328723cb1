package auth

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Namespace prefixes a pattern may start with (PROTOCOL.md 1.8).
const (
	persistentPrefix = "persistent:"
	temporaryPrefix  = "temporary:"
)

type namespace int8

const (
	nsAny namespace = iota
	nsPersistent
	nsTemporary
)

// Pattern is a compiled object-name pattern: '*' matches any run of characters
// (possibly empty) except '/', '**' any run including '/', every other
// character itself. An optional "persistent:" or "temporary:" prefix restricts
// the pattern to one namespace. The zero Pattern matches nothing.
type Pattern struct {
	src string
	ns  namespace
	// A regexp rather than a hand-written matcher: RE2 matches in linear time,
	// so patterns like "*a*a*a*b" from a token cannot stall the server.
	re *regexp.Regexp
}

// CompilePattern parses s. Errors say what is wrong with s and how to fix it.
func CompilePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf(`pattern is empty: use "**" for every object`)
	}
	if !utf8.ValidString(s) {
		return Pattern{}, fmt.Errorf("pattern %q is not valid UTF-8", s)
	}
	p := Pattern{src: s}
	rest := s
	switch {
	case strings.HasPrefix(s, persistentPrefix):
		p.ns, rest = nsPersistent, s[len(persistentPrefix):]
	case strings.HasPrefix(s, temporaryPrefix):
		p.ns, rest = nsTemporary, s[len(temporaryPrefix):]
	}
	// ':' is legal in object names, so only near-misses of a prefix are errors;
	// "Persistent:x" would otherwise silently become a literal that never matches.
	if hasPrefixFold(s, persistentPrefix) || hasPrefixFold(s, temporaryPrefix) {
		if p.ns == nsAny {
			return Pattern{}, fmt.Errorf(`pattern %q: write the namespace prefix in lowercase, "persistent:" or "temporary:"`, s)
		}
		if hasPrefixFold(rest, persistentPrefix) || hasPrefixFold(rest, temporaryPrefix) {
			return Pattern{}, fmt.Errorf(`pattern %q has two namespace prefixes: use one, or none for both namespaces`, s)
		}
	}
	if rest == "" {
		return Pattern{}, fmt.Errorf(`pattern %q has nothing after the prefix: use "%s**" for every object in that namespace`, s, s)
	}
	if strings.Contains(rest, "***") {
		return Pattern{}, fmt.Errorf(`pattern %q: use * (any run without '/') or ** (any run including '/'), not three or more in a row`, s)
	}
	if i := strings.IndexFunc(rest, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(rest[i:])
		return Pattern{}, fmt.Errorf("pattern %q contains %q: object names cannot contain spaces or control characters", s, r)
	}

	var b strings.Builder
	b.WriteString(`^(?s:`)
	for rest != "" {
		switch {
		case strings.HasPrefix(rest, "**"):
			b.WriteString(`.*`)
			rest = rest[2:]
		case rest[0] == '*':
			b.WriteString(`[^/]*`)
			rest = rest[1:]
		default:
			n := strings.IndexByte(rest, '*')
			if n < 0 {
				n = len(rest)
			}
			b.WriteString(regexp.QuoteMeta(rest[:n]))
			rest = rest[n:]
		}
	}
	b.WriteString(`)$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern %q cannot be compiled: %v", s, err)
	}
	p.re = re
	return p, nil
}

// Match reports whether the object name in the given namespace matches p.
func (p Pattern) Match(persistent bool, name string) bool {
	switch {
	case p.re == nil:
		return false
	case p.ns == nsPersistent && !persistent, p.ns == nsTemporary && persistent:
		return false
	}
	return p.re.MatchString(name)
}

// String returns the pattern as it was written, prefix included.
func (p Pattern) String() string { return p.src }

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
