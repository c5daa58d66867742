package sfemu

import (
	"bytes"
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// orderedMap is a JSON object that keeps its keys in insertion order, so records read like Salesforce's
// (attributes first, then fields in the order asked for).
type orderedMap struct {
	keys []string
	vals map[string]any
}

func newOrderedMap() *orderedMap { return &orderedMap{vals: map[string]any{}} }

func (m *orderedMap) set(k string, v any) {
	if _, ok := m.vals[k]; !ok {
		m.keys = append(m.keys, k)
	}
	m.vals[k] = v
}

func (m *orderedMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(m.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// renderValue writes a stored value as Salesforce does; numbers never in exponent form.
func renderValue(f *field, v any) any {
	if x, ok := v.(float64); ok {
		if f.Type == typeInt {
			return json.Number(strconv.FormatInt(int64(x), 10))
		}
		return json.Number(strconv.FormatFloat(x, 'f', -1, 64))
	}
	return v
}

func attributes(o *object, id, version string) map[string]string {
	return map[string]string{"type": o.Name, "url": "/services/data/" + version + "/sobjects/" + o.Name + "/" + id}
}

// path is a resolved field path: the reference fields it walks through, then the field it reads.
type path struct {
	hops []*field
	objs []*object // object of each hop's target
	leaf *field
}

func resolvePath(s *schema, o *object, p string, q string, pos int) (path, *APIError) {
	parts := strings.Split(p, ".")
	var rp path
	cur := o
	for i, part := range parts[:len(parts)-1] {
		if i == 0 && len(parts) > 1 && strings.EqualFold(part, o.Name) && cur.relations[strings.ToLower(part)] == nil {
			continue // SELECT Opportunity.Name FROM Opportunity
		}
		f := cur.relations[strings.ToLower(part)]
		if f == nil || f.ReferenceTo == anyObject {
			return rp, soqlError("INVALID_FIELD", q, pos,
				"Didn't understand relationship '%s' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.", part)
		}
		rp.hops = append(rp.hops, f)
		cur = s.object(f.ReferenceTo)
		rp.objs = append(rp.objs, cur)
	}
	last := parts[len(parts)-1]
	rp.leaf = cur.field(last)
	if rp.leaf == nil {
		return rp, soqlError("INVALID_FIELD", q, pos,
			"No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
			last, cur.Name)
	}
	return rp, nil
}

func (s *store) valueOf(rp path, r record) any {
	for i, h := range rp.hops {
		id, _ := r[h.Name].(string)
		if id == "" {
			return nil
		}
		r = s.tables[rp.objs[i]].rows[id]
		if r == nil {
			return nil
		}
	}
	return r[rp.leaf.Name]
}

type compiledItem struct {
	path  path
	sub   *compiled
	child *childRelationship
}

type compiledOrder struct {
	path      path
	desc      bool
	nullsLast bool
}

type compiled struct {
	obj     *object
	items   []compiledItem
	where   func(record) bool
	orderBy []compiledOrder
	limit   int
	offset  int
	count   bool
}

// compile resolves a parsed query against the schema.
func (s *store) compile(q string, pq *soqlQuery, parent *object) (*compiled, *APIError) {
	c := &compiled{limit: pq.limit, offset: pq.offset, count: pq.hasCount}
	var rel *childRelationship
	if parent == nil {
		c.obj = s.schema.object(pq.from)
		if c.obj == nil {
			return nil, soqlError("INVALID_TYPE", q, pq.fromPos,
				"sObject type '%s' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.", pq.from)
		}
	} else {
		rel = parent.child(pq.from)
		if rel == nil {
			return nil, soqlError("INVALID_TYPE", q, pq.fromPos,
				"Didn't understand relationship '%s' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.", pq.from)
		}
		c.obj = rel.Child
	}
	seen := map[string]bool{}
	for _, it := range pq.items {
		switch {
		case it.count:
		case it.sub != nil:
			sub, err := s.compile(q, it.sub, c.obj)
			if err != nil {
				return nil, err
			}
			c.items = append(c.items, compiledItem{sub: sub, child: c.obj.child(it.sub.from)})
		default:
			key := strings.ToLower(it.path)
			if seen[key] {
				return nil, soqlError("MALFORMED_QUERY", q, it.pos, "duplicate field selected: %s", it.path)
			}
			seen[key] = true
			rp, err := resolvePath(s.schema, c.obj, it.path, q, it.pos)
			if err != nil {
				return nil, err
			}
			c.items = append(c.items, compiledItem{path: rp})
		}
	}
	if pq.where != nil {
		w, err := s.compileExpr(q, c.obj, pq.where)
		if err != nil {
			return nil, err
		}
		c.where = w
	}
	for _, o := range pq.orderBy {
		rp, err := resolvePath(s.schema, c.obj, o.path, q, o.pos)
		if err != nil {
			return nil, err
		}
		c.orderBy = append(c.orderBy, compiledOrder{path: rp, desc: o.desc, nullsLast: o.nullsLast})
	}
	return c, nil
}

func (s *store) compileExpr(q string, o *object, e expr) (func(record) bool, *APIError) {
	switch e := e.(type) {
	case boolExpr:
		var terms []func(record) bool
		for _, t := range e.terms {
			f, err := s.compileExpr(q, o, t)
			if err != nil {
				return nil, err
			}
			terms = append(terms, f)
		}
		if e.op == "AND" {
			return func(r record) bool {
				for _, t := range terms {
					if !t(r) {
						return false
					}
				}
				return true
			}, nil
		}
		return func(r record) bool {
			for _, t := range terms {
				if t(r) {
					return true
				}
			}
			return false
		}, nil
	case notExpr:
		x, err := s.compileExpr(q, o, e.x)
		if err != nil {
			return nil, err
		}
		return func(r record) bool { return !x(r) }, nil
	case cmpExpr:
		return s.compileComparison(q, o, e)
	}
	return nil, badRequest("MALFORMED_QUERY", "unsupported expression")
}

func (s *store) compileComparison(q string, o *object, e cmpExpr) (func(record) bool, *APIError) {
	rp, err := resolvePath(s.schema, o, e.path, q, e.pos)
	if err != nil {
		return nil, err
	}
	f := rp.leaf
	var vals []any
	for _, t := range e.vals {
		v, err := literalValue(q, f, t, e.op)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	if e.op == "LIKE" {
		if !f.isText() && !f.isID() {
			return nil, soqlError("INVALID_FIELD", q, e.pos, "invalid operator on %s field: LIKE", f.Type)
		}
		pattern, ok := vals[0].(string)
		if !ok {
			return nil, soqlError("MALFORMED_QUERY", q, e.vals[0].pos, "LIKE needs a string")
		}
		re := likeRegexp(pattern)
		return func(r record) bool {
			v, ok := s.valueOf(rp, r).(string)
			return ok && re.MatchString(v)
		}, nil
	}
	if vals[0] == nil && e.op != "=" && e.op != "!=" && e.op != "IN" && e.op != "NOTIN" {
		return nil, soqlError("INVALID_QUERY_FILTER_OPERATOR", q, e.pos, "invalid operator on null: %s", e.op)
	}
	in := func(v any) bool {
		for _, x := range vals {
			if x == nil && v == nil || x != nil && v != nil && compareValues(f, v, x) == 0 {
				return true
			}
		}
		return false
	}
	return func(r record) bool {
		v := s.valueOf(rp, r)
		if f.Type == typeBoolean && v == nil {
			v = false
		}
		switch e.op {
		case "IN", "=":
			return in(v)
		case "NOTIN", "!=":
			return !in(v)
		}
		if v == nil {
			return false
		}
		c := compareValues(f, v, vals[0])
		switch e.op {
		case "<":
			return c < 0
		case "<=":
			return c <= 0
		case ">":
			return c > 0
		case ">=":
			return c >= 0
		}
		return false
	}, nil
}

// literalValue converts a literal to the stored form of field f, refusing types that do not fit as SOQL does.
func literalValue(q string, f *field, t token, op string) (any, *APIError) {
	if t.kind == tokIdent && strings.EqualFold(t.text, "null") {
		return nil, nil
	}
	mismatch := func(kind string, quoted bool) *APIError {
		hint := "should not be enclosed in quotes"
		if quoted {
			hint = "should be enclosed in quotes"
		}
		return soqlError("INVALID_FIELD", q, t.pos, "value of filter criterion for field '%s' must be of type %s and %s",
			f.Name, kind, hint)
	}
	switch {
	case f.isID():
		if t.kind != tokString {
			return nil, mismatch("id", true)
		}
		if op == "LIKE" {
			return t.val, nil
		}
		id, ok := NormalizeID(t.val)
		if !ok {
			return nil, soqlError("MALFORMED_ID", q, t.pos, "invalid ID field: %s", t.val)
		}
		return id, nil
	case f.isText():
		if t.kind != tokString {
			return nil, mismatch("string", true)
		}
		return t.val, nil
	case f.isNumber():
		if t.kind != tokNumber {
			return nil, mismatch(f.Type, false)
		}
		x, _ := strconv.ParseFloat(t.val, 64)
		return x, nil
	case f.Type == typeBoolean:
		if t.kind != tokIdent {
			return nil, mismatch("boolean", false)
		}
		return strings.EqualFold(t.text, "true"), nil
	case f.Type == typeDate:
		if t.kind != tokDate {
			return nil, mismatch("date", false)
		}
		return t.val, nil
	case f.Type == typeDateTime:
		if t.kind != tokDateTime {
			return nil, mismatch("dateTime", false)
		}
		return t.val, nil
	}
	return nil, mismatch(f.Type, false)
}

func likeRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("(?is)^")
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '\\' && i+1 < len(pattern):
			b.WriteString(regexp.QuoteMeta(string(pattern[i+1])))
			i++
		case c == '%':
			b.WriteString(".*")
		case c == '_':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// compareValues orders two non-nil stored values of field f; text compares case-insensitively, as SOQL does.
func compareValues(f *field, a, b any) int {
	switch x := a.(type) {
	case string:
		y, _ := b.(string)
		if f.isText() {
			return strings.Compare(strings.ToLower(x), strings.ToLower(y))
		}
		return strings.Compare(x, y)
	case float64:
		y, _ := b.(float64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case bool:
		y, _ := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	}
	return 0
}

// run executes a compiled top-level query and returns the rendered rows (none for COUNT()) and the total.
func (s *store) run(c *compiled, includeDeleted bool, version string) ([]*orderedMap, int) {
	tb := s.tables[c.obj]
	var matched []record
	for _, id := range tb.order {
		r := tb.rows[id]
		if r["IsDeleted"] == true && !includeDeleted {
			continue
		}
		if c.where == nil || c.where(r) {
			matched = append(matched, r)
		}
	}
	matched = s.window(c, matched)
	if c.count {
		return nil, len(matched)
	}
	rows := make([]*orderedMap, 0, len(matched))
	for _, r := range matched {
		rows = append(rows, s.render(c, r, version))
	}
	return rows, len(matched)
}

// window sorts and applies OFFSET and LIMIT.
func (s *store) window(c *compiled, rs []record) []record {
	if len(c.orderBy) > 0 {
		sort.SliceStable(rs, func(i, j int) bool {
			for _, o := range c.orderBy {
				a, b := s.valueOf(o.path, rs[i]), s.valueOf(o.path, rs[j])
				if a == nil && b == nil {
					continue
				}
				if a == nil || b == nil {
					return (a == nil) != o.nullsLast
				}
				cmp := compareValues(o.path.leaf, a, b)
				if cmp == 0 {
					continue
				}
				return (cmp < 0) != o.desc
			}
			return false
		})
	}
	if c.offset > 0 {
		if c.offset >= len(rs) {
			return nil
		}
		rs = rs[c.offset:]
	}
	if c.limit >= 0 && len(rs) > c.limit {
		rs = rs[:c.limit]
	}
	return rs
}

func (s *store) render(c *compiled, r record, version string) *orderedMap {
	out := newOrderedMap()
	id, _ := r["Id"].(string)
	out.set("attributes", attributes(c.obj, id, version))
	for _, it := range c.items {
		if it.sub != nil {
			out.set(it.child.Name, s.renderChildren(it, id, version))
			continue
		}
		s.renderPath(out, it.path, 0, r, version)
	}
	return out
}

// renderPath writes a (possibly nested) field into out: parents become nested records, or null when unset.
func (s *store) renderPath(out *orderedMap, rp path, hop int, r record, version string) {
	if hop == len(rp.hops) {
		out.set(rp.leaf.Name, renderValue(rp.leaf, r[rp.leaf.Name]))
		return
	}
	h := rp.hops[hop]
	var parent record
	if id, _ := r[h.Name].(string); id != "" {
		parent = s.tables[rp.objs[hop]].rows[id]
	}
	if parent == nil {
		if _, ok := out.vals[h.RelationshipName]; !ok {
			out.set(h.RelationshipName, nil)
		}
		return
	}
	nested, _ := out.vals[h.RelationshipName].(*orderedMap)
	if nested == nil {
		nested = newOrderedMap()
		nested.set("attributes", attributes(rp.objs[hop], parent["Id"].(string), version))
		out.set(h.RelationshipName, nested)
	}
	s.renderPath(nested, rp, hop+1, parent, version)
}

func (s *store) renderChildren(it compiledItem, parentID, version string) any {
	tb := s.tables[it.sub.obj]
	var matched []record
	for _, id := range tb.order {
		r := tb.rows[id]
		if r["IsDeleted"] == true || r[it.child.Field.Name] != parentID {
			continue
		}
		if it.sub.where == nil || it.sub.where(r) {
			matched = append(matched, r)
		}
	}
	matched = s.window(it.sub, matched)
	if len(matched) == 0 {
		return nil
	}
	records := make([]*orderedMap, 0, len(matched))
	for _, r := range matched {
		records = append(records, s.render(it.sub, r, version))
	}
	return map[string]any{"totalSize": len(records), "done": true, "records": records}
}

// renderRecord renders a whole record (or the given fields) for GET /sobjects/{Type}/{Id}.
func renderRecord(o *object, r record, fields []*field, version string) *orderedMap {
	out := newOrderedMap()
	out.set("attributes", attributes(o, r["Id"].(string), version))
	if fields == nil {
		fields = o.Fields
	}
	for _, f := range fields {
		out.set(f.Name, renderValue(f, r[f.Name]))
	}
	return out
}
