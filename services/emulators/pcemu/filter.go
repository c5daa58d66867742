package pcemu

import (
	"errors"
	"fmt"
	"strings"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// predicate is a compiled OData $filter.
type predicate func(*pc.Referral) bool

// FilterMode is how the emulator treats a $filter on a property the Referrals API docs do not list as
// filterable (id, externalReferenceId, name). The docs' filter examples name only engagementId, status,
// substatus, qualification, type, direction, customerProfile/address/country and team (partner-center.md §1);
// updatedDateTime and createdDateTime are the documented $orderby properties and are kept filterable for the
// incremental poll.
type FilterMode string

const (
	// FilterRefuse answers 400 with the OData error, as an OData service does for a property that is not
	// filterable (the default: strictest).
	FilterRefuse FilterMode = "refuse"
	// FilterIgnore drops the clause and answers as if it held for every referral: what a service that ignores
	// unknown filter clauses would do, and the case where trusting the result adopts the wrong referral.
	FilterIgnore FilterMode = "ignore"
	// FilterHonor evaluates it (the emulator's old, too lenient behaviour; for tests of the evaluator only).
	FilterHonor FilterMode = "honor"
)

// stringFields are the string properties the evaluator knows; exact ones compare case-sensitively (ids from
// CRMs can be); documented ones may be filtered on whatever the FilterMode.
var stringFields = map[string]struct {
	get        func(*pc.Referral) string
	exact      bool
	documented bool
}{
	"id":                  {func(r *pc.Referral) string { return r.ID }, false, false},
	"engagementId":        {func(r *pc.Referral) string { return r.EngagementID }, false, true},
	"externalReferenceId": {func(r *pc.Referral) string { return r.ExternalReferenceID }, true, false},
	"name":                {func(r *pc.Referral) string { return r.Name }, true, false},
	"status":              {func(r *pc.Referral) string { return r.Status }, false, true},
	"substatus":           {func(r *pc.Referral) string { return r.Substatus }, false, true},
	"type":                {func(r *pc.Referral) string { return r.Type }, false, true},
	"direction":           {func(r *pc.Referral) string { return r.Direction }, false, true},
	"qualification":       {func(r *pc.Referral) string { return r.Qualification }, false, true},
	"customerProfile/address/country": {func(r *pc.Referral) string {
		if r.CustomerProfile == nil || r.CustomerProfile.Address == nil {
			return ""
		}
		return r.CustomerProfile.Address.Country
	}, false, true},
}

// errNotFilterable is the refusal of an undocumented filter property; listReferrals answers it with the OData
// message ASP.NET OData services give ("The query specified in the URI is not valid. …").
type errNotFilterable struct{ property string }

func (e errNotFilterable) Error() string {
	return fmt.Sprintf("The query specified in the URI is not valid. The property '%s' cannot be used in the $filter query option.", e.property)
}

var timeFields = map[string]func(*pc.Referral) string{
	"createdDateTime": func(r *pc.Referral) string { return r.CreatedDateTime },
	"updatedDateTime": func(r *pc.Referral) string { return r.UpdatedDateTime },
}

// parseFilter compiles the subset of OData $filter the Referrals API documents: comparisons of a property with a
// literal joined by and/or/not and parentheses.
func parseFilter(s string, mode FilterMode) (predicate, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks, mode: mode}
	pred, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected '%s'", p.toks[p.pos].text)
	}
	return pred, nil
}

type token struct {
	text   string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, errors.New("unterminated string literal")
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, token{text: b.String(), quoted: true})
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '(' && s[j] != ')' && s[j] != '\'' {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []token
	pos  int
	mode FilterMode
}

func (p *filterParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].quoted && p.toks[p.pos].text == w
}

func (p *filterParser) or() (predicate, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		p.pos++
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(r *pc.Referral) bool { return l(r) || right(r) }
	}
	return left, nil
}

func (p *filterParser) and() (predicate, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		right, err := p.unary()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(r *pc.Referral) bool { return l(r) && right(r) }
	}
	return left, nil
}

func (p *filterParser) unary() (predicate, error) {
	switch {
	case p.peekWord("not"):
		p.pos++
		inner, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(r *pc.Referral) bool { return !inner(r) }, nil
	case p.peekWord("("):
		p.pos++
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peekWord(")") {
			return nil, errors.New("missing ')'")
		}
		p.pos++
		return inner, nil
	}
	return p.comparison()
}

func (p *filterParser) comparison() (predicate, error) {
	if p.pos+3 > len(p.toks) {
		return nil, errors.New("incomplete comparison: expected <property> <operator> <value>")
	}
	field, op, lit := p.toks[p.pos], p.toks[p.pos+1], p.toks[p.pos+2]
	p.pos += 3
	if field.quoted || op.quoted {
		return nil, fmt.Errorf("expected a property and an operator near '%s'", field.text)
	}
	switch op.text {
	case "eq", "ne", "gt", "ge", "lt", "le":
	default:
		return nil, fmt.Errorf("unsupported operator '%s'", op.text)
	}
	if get, ok := timeFields[field.text]; ok {
		want, err := time.Parse(time.RFC3339Nano, lit.text)
		if err != nil {
			return nil, fmt.Errorf("'%s' is not an ISO-8601 date-time for %s", lit.text, field.text)
		}
		return func(r *pc.Referral) bool {
			got, err := time.Parse(time.RFC3339Nano, get(r))
			if err != nil {
				return false
			}
			c := got.Compare(want)
			return compareOK(op.text, c)
		}, nil
	}
	f, ok := stringFields[field.text]
	if !ok {
		return nil, fmt.Errorf("property '%s' cannot be filtered on", field.text)
	}
	if !f.documented {
		switch p.mode {
		case FilterIgnore:
			return func(*pc.Referral) bool { return true }, nil
		case FilterHonor:
		default:
			return nil, errNotFilterable{field.text}
		}
	}
	if op.text != "eq" && op.text != "ne" {
		return nil, fmt.Errorf("operator '%s' is not supported on %s", op.text, field.text)
	}
	unquotedID := field.text == "engagementId" || field.text == "id" // real relatedReferrals links leave the guid unquoted
	if !lit.quoted && lit.text != "null" && !unquotedID {
		return nil, fmt.Errorf("the value for %s must be a quoted string", field.text)
	}
	want := lit.text
	if !lit.quoted && lit.text == "null" {
		want = ""
	}
	return func(r *pc.Referral) bool {
		got := f.get(r)
		eq := got == want || (!f.exact && strings.EqualFold(got, want))
		return eq == (op.text == "eq")
	}, nil
}

func compareOK(op string, c int) bool {
	switch op {
	case "eq":
		return c == 0
	case "ne":
		return c != 0
	case "gt":
		return c > 0
	case "ge":
		return c >= 0
	case "lt":
		return c < 0
	default:
		return c <= 0
	}
}
