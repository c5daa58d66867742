package sfemu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The SOQL subset cosell needs: SELECT fields, parent paths, child subqueries and COUNT(); WHERE with
// AND/OR/NOT, comparisons, IN, LIKE and typed literals; ORDER BY, LIMIT and OFFSET.

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokNumber
	tokDate
	tokDateTime
	tokPunct
)

type token struct {
	kind tokenKind
	text string // identifier, punctuation, literal source
	val  string // unescaped string value, canonical date/datetime
	pos  int    // byte offset in the query
}

var (
	reDateTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})`)
	reDate     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)
	reNumber   = regexp.MustCompile(`^-?\d+(\.\d+)?`)
)

func lex(q string) ([]token, *APIError) {
	var toks []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(q) {
				if q[j] == '\\' && j+1 < len(q) {
					switch q[j+1] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case '%', '_':
						b.WriteByte('\\') // kept escaped for LIKE
						b.WriteByte(q[j+1])
					default:
						b.WriteByte(q[j+1])
					}
					j += 2
					continue
				}
				if q[j] == '\'' {
					closed = true
					break
				}
				b.WriteByte(q[j])
				j++
			}
			if !closed {
				return nil, soqlError("MALFORMED_QUERY", q, i, "unexpected token: '%s'", q[i:])
			}
			toks = append(toks, token{kind: tokString, text: q[i : j+1], val: b.String(), pos: i})
			i = j + 1
		case c >= '0' && c <= '9' || c == '-' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			rest := q[i:]
			if m := reDateTime.FindString(rest); m != "" {
				t, ok := parseDateTime(strings.Replace(m, "+0000", "Z", 1))
				if !ok {
					t, ok = parseDateTime(m)
				}
				if !ok {
					return nil, soqlError("MALFORMED_QUERY", q, i, "line 1:%d no viable alternative at character '%s'", i, m)
				}
				toks = append(toks, token{kind: tokDateTime, text: m, val: t.UTC().Format(dateTimeLayout), pos: i})
				i += len(m)
			} else if m := reDate.FindString(rest); m != "" {
				if _, err := time.Parse(dateLayout, m); err != nil {
					return nil, soqlError("MALFORMED_QUERY", q, i, "line 1:%d no viable alternative at character '%s'", i, m)
				}
				toks = append(toks, token{kind: tokDate, text: m, val: m, pos: i})
				i += len(m)
			} else {
				m := reNumber.FindString(rest)
				toks = append(toks, token{kind: tokNumber, text: m, val: m, pos: i})
				i += len(m)
			}
		case isAlnum(c) || c == '_':
			j := i
			for j < len(q) && (isAlnum(q[j]) || q[j] == '_' || q[j] == '.') {
				j++
			}
			toks = append(toks, token{kind: tokIdent, text: q[i:j], pos: i})
			i = j
		case strings.HasPrefix(q[i:], "!=") || strings.HasPrefix(q[i:], "<>") ||
			strings.HasPrefix(q[i:], "<=") || strings.HasPrefix(q[i:], ">="):
			toks = append(toks, token{kind: tokPunct, text: q[i : i+2], pos: i})
			i += 2
		case strings.ContainsRune("(),=<>", rune(c)):
			toks = append(toks, token{kind: tokPunct, text: string(c), pos: i})
			i++
		default:
			return nil, soqlError("MALFORMED_QUERY", q, i, "line 1:%d no viable alternative at character '%c'", i, c)
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(q)}), nil
}

// soqlError renders an error the way Salesforce does: the query, a caret under the offending column, and
// the message.
func soqlError(code, q string, pos int, format string, args ...any) *APIError {
	flat := strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(q)
	msg := fmt.Sprintf("\n%s\n%s^\nERROR at Row:1:Column:%d\n%s", flat, strings.Repeat(" ", pos), pos+1,
		fmt.Sprintf(format, args...))
	return badRequest(code, "%s", msg)
}

type selectItem struct {
	path  string
	pos   int
	sub   *soqlQuery
	count bool
}

type orderItem struct {
	path      string
	pos       int
	desc      bool
	nullsLast bool
}

type soqlQuery struct {
	from     string
	fromPos  int
	items    []selectItem
	where    expr
	orderBy  []orderItem
	limit    int // -1: none
	offset   int
	hasCount bool
}

type expr interface{ isExpr() }

type boolExpr struct {
	op    string // AND, OR
	terms []expr
}

type notExpr struct{ x expr }

type cmpExpr struct {
	path string
	pos  int
	op   string // = != < <= > >= LIKE IN NOTIN
	vals []token
}

func (boolExpr) isExpr() {}
func (notExpr) isExpr()  {}
func (cmpExpr) isExpr()  {}

var comparisonOps = map[string]bool{"=": true, "!=": true, "<>": true, "<": true, "<=": true, ">": true, ">=": true}

type parser struct {
	q    string
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tokPunct && t.text == s
}

func (p *parser) unexpected() *APIError {
	t := p.peek()
	if t.kind == tokEOF {
		return soqlError("MALFORMED_QUERY", p.q, t.pos, "unexpected token: <EOF>")
	}
	return soqlError("MALFORMED_QUERY", p.q, t.pos, "unexpected token: '%s'", t.text)
}

func (p *parser) expectKeyword(kw string) *APIError {
	if !p.isKeyword(kw) {
		return p.unexpected()
	}
	p.next()
	return nil
}

func (p *parser) expectPunct(s string) *APIError {
	if !p.isPunct(s) {
		return p.unexpected()
	}
	p.next()
	return nil
}

// parseSOQL parses a query; names are resolved later against the schema.
func parseSOQL(q string) (*soqlQuery, *APIError) {
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{q: q, toks: toks}
	query, err := p.query(false)
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tokEOF {
		return nil, p.unexpected()
	}
	return query, nil
}

var reservedWords = map[string]bool{"select": true, "from": true, "where": true, "order": true, "by": true,
	"limit": true, "offset": true, "and": true, "or": true, "not": true, "in": true, "like": true, "null": true,
	"true": true, "false": true, "asc": true, "desc": true, "nulls": true, "first": true, "last": true,
	"group": true, "having": true}

func (p *parser) ident() (token, *APIError) {
	t := p.peek()
	if t.kind != tokIdent || reservedWords[strings.ToLower(t.text)] {
		return t, p.unexpected()
	}
	return p.next(), nil
}

func (p *parser) query(sub bool) (*soqlQuery, *APIError) {
	q := &soqlQuery{limit: -1}
	if err := p.expectKeyword("SELECT"); err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isKeyword("COUNT"):
			t := p.next()
			if err := p.expectPunct("("); err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			q.items = append(q.items, selectItem{count: true, pos: t.pos})
			q.hasCount = true
		case p.isPunct("(") && !sub:
			p.next()
			s, err := p.query(true)
			if err != nil {
				return nil, err
			}
			if err := p.expectPunct(")"); err != nil {
				return nil, err
			}
			q.items = append(q.items, selectItem{sub: s, pos: s.fromPos})
		default:
			t, err := p.ident()
			if err != nil {
				return nil, err
			}
			q.items = append(q.items, selectItem{path: t.text, pos: t.pos})
		}
		if !p.isPunct(",") {
			break
		}
		p.next()
	}
	if q.hasCount && len(q.items) > 1 {
		return nil, soqlError("MALFORMED_QUERY", p.q, q.items[0].pos, "COUNT() must be the only element in the SELECT list")
	}
	if err := p.expectKeyword("FROM"); err != nil {
		return nil, err
	}
	t, err := p.ident()
	if err != nil {
		return nil, err
	}
	q.from, q.fromPos = t.text, t.pos
	if p.isKeyword("WHERE") {
		p.next()
		if q.where, err = p.condition(); err != nil {
			return nil, err
		}
	}
	if p.isKeyword("ORDER") {
		p.next()
		if err := p.expectKeyword("BY"); err != nil {
			return nil, err
		}
		for {
			t, err := p.ident()
			if err != nil {
				return nil, err
			}
			o := orderItem{path: t.text, pos: t.pos}
			if p.isKeyword("ASC") {
				p.next()
			} else if p.isKeyword("DESC") {
				p.next()
				o.desc, o.nullsLast = true, true
			}
			if p.isKeyword("NULLS") {
				p.next()
				switch {
				case p.isKeyword("FIRST"):
					o.nullsLast = false
				case p.isKeyword("LAST"):
					o.nullsLast = true
				default:
					return nil, p.unexpected()
				}
				p.next()
			}
			q.orderBy = append(q.orderBy, o)
			if !p.isPunct(",") {
				break
			}
			p.next()
		}
	}
	if p.isKeyword("LIMIT") {
		p.next()
		if q.limit, err = p.integer(); err != nil {
			return nil, err
		}
	}
	if p.isKeyword("OFFSET") {
		p.next()
		if q.offset, err = p.integer(); err != nil {
			return nil, err
		}
	}
	return q, nil
}

func (p *parser) integer() (int, *APIError) {
	t := p.peek()
	n, err := strconv.Atoi(t.text)
	if t.kind != tokNumber || err != nil || n < 0 {
		return 0, p.unexpected()
	}
	p.next()
	return n, nil
}

// condition parses a chain of terms joined by one operator: SOQL refuses AND and OR mixed without parentheses.
func (p *parser) condition() (expr, *APIError) {
	first, err := p.unary()
	if err != nil {
		return nil, err
	}
	b := boolExpr{terms: []expr{first}}
	for p.isKeyword("AND") || p.isKeyword("OR") {
		op := strings.ToUpper(p.peek().text)
		if b.op != "" && b.op != op {
			return nil, p.unexpected()
		}
		b.op = op
		p.next()
		t, err := p.unary()
		if err != nil {
			return nil, err
		}
		b.terms = append(b.terms, t)
	}
	if len(b.terms) == 1 {
		return first, nil
	}
	return b, nil
}

func (p *parser) unary() (expr, *APIError) {
	if p.isKeyword("NOT") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notExpr{x}, nil
	}
	if p.isPunct("(") {
		p.next()
		x, err := p.condition()
		if err != nil {
			return nil, err
		}
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		return x, nil
	}
	t, err := p.ident()
	if err != nil {
		return nil, err
	}
	c := cmpExpr{path: t.text, pos: t.pos}
	switch {
	case p.isKeyword("NOT"):
		p.next()
		if !p.isKeyword("IN") {
			return nil, p.unexpected()
		}
		p.next()
		c.op = "NOTIN"
	case p.isKeyword("IN"):
		p.next()
		c.op = "IN"
	case p.isKeyword("LIKE"):
		p.next()
		c.op = "LIKE"
	case p.peek().kind == tokPunct && comparisonOps[p.peek().text]:
		c.op = p.next().text
		if c.op == "<>" {
			c.op = "!="
		}
	default:
		return nil, p.unexpected()
	}
	if c.op == "IN" || c.op == "NOTIN" {
		if err := p.expectPunct("("); err != nil {
			return nil, err
		}
		for {
			v, err := p.literal()
			if err != nil {
				return nil, err
			}
			c.vals = append(c.vals, v)
			if !p.isPunct(",") {
				break
			}
			p.next()
		}
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		return c, nil
	}
	v, err := p.literal()
	if err != nil {
		return nil, err
	}
	c.vals = []token{v}
	return c, nil
}

func (p *parser) literal() (token, *APIError) {
	t := p.peek()
	switch t.kind {
	case tokString, tokNumber, tokDate, tokDateTime:
		return p.next(), nil
	case tokIdent:
		switch strings.ToLower(t.text) {
		case "null", "true", "false":
			return p.next(), nil
		}
	}
	return t, p.unexpected()
}
