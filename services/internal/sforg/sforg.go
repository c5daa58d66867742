// Package sforg is what cosell learns of a Salesforce org at start-up from its own describe, so every SOQL
// field list and every write fits the org it runs against instead of an assumed one. Orgs differ:
// CurrencyIsoCode exists only once multiple currencies are enabled; a custom field is missing until
// cosell's package is deployed, and a field the integration user cannot see (field-level security) is
// missing from describe just the same.
//
// A field cosell reads that the org lacks is a start-up error naming the field and the fix, except the
// optional ones, which fall back to a value the org implies: CurrencyIsoCode falls back to the org's
// currency (Organization.DefaultCurrencyIsoCode).
package sforg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/clients/sfapi"
)

// Describer is the part of the Salesforce client Discover needs.
type Describer interface {
	Describe(ctx context.Context, object string) (sfapi.Description, error)
	Query(ctx context.Context, soql string) ([]map[string]any, error)
}

// FixDeploy is what to do about a field or object of cosell's package that the org's describe lacks.
const FixDeploy = "deploy cosell's package (sf project deploy start --source-dir deploy/salesforce/force-app --target-org <alias>) " +
	"and assign the permission set Cosell_Integration to the integration user (a field it cannot see is missing from describe)"

// FixMissingField is what to do about a field cosell reads that the org's describe lacks: it may be one
// the mapping names.
const FixMissingField = FixDeploy + ", or remove the field from the mapping (COSELL_MAPPING_FILE)"

// Org is one org's shape: the fields of the objects described so far, and its currency.
type Org struct {
	c       Describer
	objects map[string]map[string]sfapi.FieldDescription // lower-case object -> lower-case field -> field
	// Currency is the org's corporate currency; in a single-currency org, every amount's currency.
	Currency string
}

// Discover describes the given objects and reads the org's currency. Parents named by a relationship path
// ("Account.BillingCountry") are described later, when a field list needs them.
func Discover(ctx context.Context, c Describer, objects ...string) (*Org, error) {
	o := &Org{c: c, objects: map[string]map[string]sfapi.FieldDescription{}}
	for _, name := range objects {
		if _, err := o.object(ctx, name); err != nil {
			return nil, err
		}
	}
	// Organization.DefaultCurrencyIsoCode: the corporate currency (Object Reference, "Organization").
	rows, err := c.Query(ctx, "SELECT DefaultCurrencyIsoCode FROM Organization")
	if err != nil {
		return nil, fmt.Errorf("read the org's currency (SELECT DefaultCurrencyIsoCode FROM Organization): %w", err)
	}
	if len(rows) == 1 {
		o.Currency, _ = rows[0]["DefaultCurrencyIsoCode"].(string)
	}
	if o.Currency == "" {
		return nil, errors.New("the org's currency is unknown: Organization.DefaultCurrencyIsoCode is empty or not readable by the integration user; give it the View Setup and Configuration permission")
	}
	return o, nil
}

// Wait is Discover that tries again every retry while Salesforce answers with a transient failure (an
// outage, a lock or a spent daily allowance at start-up must not stop a stage), logging each to log (nil:
// nowhere), until ctx is done; a permanent refusal (a missing object, a refused login) returns at once. The
// stages that read Salesforce call it while they start, before they report ready.
func Wait(ctx context.Context, c Describer, retry time.Duration, log *slog.Logger, objects ...string) (*Org, error) {
	t := time.NewTicker(max(retry, 10*time.Millisecond))
	defer t.Stop()
	for {
		o, err := Discover(ctx, c, objects...)
		if err == nil || !sfapi.IsTransient(err) {
			return o, err
		}
		if log != nil {
			log.Warn("cannot read the org's shape yet; trying again before the stage reports ready", "err", err, "retry", retry)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

func (o *Org) object(ctx context.Context, name string) (map[string]sfapi.FieldDescription, error) {
	if fields, ok := o.objects[strings.ToLower(name)]; ok {
		return fields, nil
	}
	d, err := o.c.Describe(ctx, name)
	if sfapi.Code(err) == "NOT_FOUND" {
		// An object the org lacks, or one the integration user cannot see, is not found (404 NOT_FOUND).
		return nil, fmt.Errorf("the Salesforce org has no object %s: %s: %w", name, FixDeploy, err)
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", name, err)
	}
	fields := make(map[string]sfapi.FieldDescription, len(d.Fields))
	for _, f := range d.Fields {
		fields[strings.ToLower(f.Name)] = f
	}
	o.objects[strings.ToLower(name)] = fields
	return fields, nil
}

// Fields returns object's fields from its describe, keyed by their lower-case names (described once).
func (o *Org) Fields(ctx context.Context, object string) (map[string]sfapi.FieldDescription, error) {
	return o.object(ctx, object)
}

// MultiCurrency reports whether the org has multiple currencies enabled (Opportunity has CurrencyIsoCode).
func (o *Org) MultiCurrency(ctx context.Context) bool {
	fields, err := o.object(ctx, sf.ObjectOpportunity)
	_, ok := fields[strings.ToLower(sf.FieldCurrencyIsoCode)]
	return err == nil && ok
}

// Has reports whether object has the field at path: a field name, or Relationship.Field for a parent's
// field (Account.BillingCountry on Opportunity).
func (o *Org) Has(ctx context.Context, object, path string) (bool, error) {
	fields, err := o.object(ctx, object)
	if err != nil {
		return false, err
	}
	rel, rest, parent := strings.Cut(path, ".")
	if !parent {
		_, ok := fields[strings.ToLower(path)]
		return ok, nil
	}
	for _, f := range fields {
		if strings.EqualFold(f.RelationshipName, rel) && len(f.ReferenceTo) > 0 {
			return o.Has(ctx, f.ReferenceTo[0], rest)
		}
	}
	return false, nil
}

// optional reports whether a field may be missing from an org, and what it then stands for.
func (o *Org) optional(path string) (any, bool) {
	name := path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		name = path[i+1:]
	}
	if strings.EqualFold(name, sf.FieldCurrencyIsoCode) {
		return o.Currency, true
	}
	return nil, false
}

// MissingFields is the start-up error for fields cosell reads or writes that the org lacks.
type MissingFields struct {
	Object string
	Fields []string
	// Fix is what to do; empty = FixMissingField.
	Fix string
}

func (e *MissingFields) Error() string {
	fix := e.Fix
	if fix == "" {
		fix = FixMissingField
	}
	return fmt.Sprintf("the Salesforce org has no %s field %s: %s", e.Object, strings.Join(e.Fields, ", "), fix)
}

// Select returns the paths of object the org has, in the order given, and the values standing in for the
// optional ones it lacks (CurrencyIsoCode: the org's currency). Required paths the org lacks are a
// *MissingFields error naming each.
func (o *Org) Select(ctx context.Context, object string, paths []string) ([]string, map[string]any, error) {
	var have, missing []string
	fallback := map[string]any{}
	for _, p := range paths {
		ok, err := o.Has(ctx, object, p)
		if err != nil {
			return nil, nil, err
		}
		switch v, opt := o.optional(p); {
		case ok:
			have = append(have, p)
		case opt:
			fallback[p] = v
		default:
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, nil, &MissingFields{Object: object, Fields: missing}
	}
	return have, fallback, nil
}

// ErrCurrencyMismatch is a write of an amount in a currency a single-currency org cannot hold.
var ErrCurrencyMismatch = errors.New("currency not available in this org")

// Fit drops from a write the optional fields the org lacks. A value it drops must be what the org implies
// (an amount in the org's own currency); anything else would be silently reinterpreted, so it is an error
// wrapping ErrCurrencyMismatch that names the field, the values and the fix.
func (o *Org) Fit(ctx context.Context, object string, fields map[string]any) (map[string]any, error) {
	var out map[string]any
	for k, v := range fields {
		implied, opt := o.optional(k)
		if !opt {
			continue
		}
		ok, err := o.Has(ctx, object, k)
		if err != nil {
			return nil, err
		}
		if ok {
			continue
		}
		if s, _ := v.(string); v != nil && !strings.EqualFold(strings.TrimSpace(s), fmt.Sprint(implied)) {
			return nil, fmt.Errorf("%s.%s is %v but the org is single-currency (%v): %w; enable multiple currencies in Setup → Company Information → Currencies and activate %v, or map the referral's currency to %v",
				object, k, v, implied, ErrCurrencyMismatch, v, implied)
		}
		if out == nil {
			out = make(map[string]any, len(fields))
			for k2, v2 := range fields {
				out[k2] = v2
			}
		}
		delete(out, k)
	}
	if out == nil {
		return fields, nil
	}
	return out, nil
}
