package mapping

import (
	"slices"
	"strings"
	"testing"

	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
	"github.com/cosell-dev/cosell/services/emulators/sfemu"
	"github.com/cosell-dev/cosell/services/internal/testkit/emutest"
)

// The org `mapping validate` checks against is the org the Salesforce emulator serves: every field the
// checks know (the standard ones and deploy/salesforce's) is in the emulator's describe, read by the real
// client over HTTP, with the same type, length, picklist values, required-ness and writeability, and
// every custom field the emulator serves is known to the checks. A mapping the checks accept is then one
// the emulator's org can hold, and one they refuse is one it would refuse.
func TestChecksKnowTheOrgTheEmulatorServes(t *testing.T) {
	t.Parallel()
	_, client := emutest.Salesforce(t, sfemu.Options{})
	schema, err := loadSchema(metadata.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	for object, fields := range schema {
		d, err := client.Describe(t.Context(), object)
		if err != nil {
			t.Errorf("%s: %v", object, err)
			continue
		}
		served := map[string]bool{}
		for _, got := range d.Fields {
			key := strings.ToLower(got.Name)
			served[key] = true
			want, ok := fields[key]
			if !ok {
				if got.Custom {
					t.Errorf("%s.%s: the emulator serves it, the mapping's checks do not know it", object, got.Name)
				}
				continue
			}
			var picklist []string
			for _, v := range got.PicklistValues {
				picklist = append(picklist, v.Value)
			}
			required := got.Createable && !got.Nillable && !got.DefaultedOnCreate && got.Type != "boolean"
			if got.Type != want.Type || (want.Length > 0 && got.Length != want.Length) || !slices.Equal(picklist, want.Picklist) ||
				required != want.Required || (got.Createable || got.Updateable) != want.Writeable {
				t.Errorf("%s.%s: the emulator describes type %s length %d picklist %q required %v writeable %v; the mapping's checks know %+v",
					object, got.Name, got.Type, got.Length, picklist, required, got.Createable || got.Updateable, want)
			}
		}
		for key, want := range fields {
			if !served[key] {
				t.Errorf("%s.%s: the mapping's checks know it, the emulator does not serve it", object, want.Name)
			}
		}
	}
}
