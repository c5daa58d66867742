package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/mapping"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// TestCustomMappingFileTakesEffect runs the system with a customised mapping file, loaded and validated the
// way the mapper service loads COSELL_MAPPING_FILE: other hold and active stages, notes kept out of
// Salesforce, and a deal value Partner Center owns. No code changes; the file alone changes the behaviour.
func TestCustomMappingFileTakesEffect(t *testing.T) {
	custom := strings.NewReplacer(
		"hold: Prospecting", "hold: Needs Analysis",
		"active: Qualification", "active: Value Proposition",
		"    pc: details.notes\n    sf: Description\n", "    pc: details.notes\n    sf: Description\n    toSF: never\n",
		"    sf: Amount\n    type: money\n", "    sf: Amount\n    type: money\n    owner: pc\n",
	).Replace(string(mapping.DefaultYAML()))
	file := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(file, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := mapping.Load(mapping.Config{File: file})
	if err != nil {
		t.Fatalf("custom mapping: %v", err)
	}
	if m.Stages.Hold != "Needs Analysis" {
		t.Fatalf("the replacements did not apply: %+v", m.Stages)
	}
	s := start(t, func(o *stack.Options) { o.Vars["COSELL_MAPPING_FILE"] = file })

	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Tailspin migration", 90000))
	if err != nil {
		t.Fatal(err)
	}
	var opp map[string]any
	testkit.Eventually(t, 20*time.Second, "opportunity created in the custom hold stage", func() (bool, string) {
		opps := stacktest.OpportunitiesFor(s, r.ID)
		if len(opps) != 1 {
			return false, fmt.Sprintf("%d opportunities", len(opps))
		}
		opp = opps[0]
		return true, ""
	})
	if opp[sf.FieldStageName] != "Needs Analysis" {
		t.Errorf("stage = %v, want the custom hold stage", opp[sf.FieldStageName])
	}
	if d := opp[sf.FieldDescription]; d != nil && d != "" {
		t.Errorf("notes must not reach Salesforce with toSF: never, got %q", d)
	}
	if opp[sf.FieldAmount] != 90000.0 {
		t.Errorf("amount = %v", opp[sf.FieldAmount])
	}
	oppID := fmt.Sprint(opp[sf.FieldID])

	// Moving to the custom active stage accepts the referral.
	if err := s.SF.Update(sf.ObjectOpportunity, oppID, map[string]any{sf.FieldStageName: "Value Proposition"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "referral accepted by the custom active stage", func() (bool, string) {
		ref, err := s.PC.Get(r.ID)
		if err != nil {
			return false, err.Error()
		}
		return ref.Status == pc.StatusActive && ref.Substatus == pc.SubstatusAccepted, ref.Status + "/" + ref.Substatus
	})
	stacktest.Quiet(t, s)
	if o, _ := s.SF.Get(sf.ObjectOpportunity, oppID); o[sf.FieldStageName] != "Value Proposition" {
		t.Fatalf("stage bounced to %v", o[sf.FieldStageName])
	}
}
