package sfemu

import (
	"encoding/json"
	"testing"
)

// TestUniqueValuesAfterUpdatesRollbacksAndDeletes: the unique check (indexed) sees every live row's current
// value, case-insensitively, and nothing a row no longer holds: not a value changed by an update, not a row
// a failed allOrNone call rolled back, not a deleted row.
func TestUniqueValuesAfterUpdatesRollbacksAndDeletes(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, Options{})
	token := login(t, srv)
	create := func(ref string) (int, string) {
		t.Helper()
		r := do(t, srv, token, "POST", "/sobjects/Opportunity", `{`+validOpp+`,"Referral_Identifier__c":"`+ref+`"}`)
		var res saveResult
		_ = json.Unmarshal([]byte(r.body), &res)
		if r.status != 201 && errorCode(t, r) != "DUPLICATE_VALUE" {
			t.Fatalf("create %s: %d %s", ref, r.status, r.body)
		}
		return r.status, res.ID
	}
	st, a := create("REF-1")
	if st != 201 {
		t.Fatal("first create refused")
	}
	if st, _ := create("ref-1"); st != 400 {
		t.Errorf("a value differing only in case was accepted: %d", st)
	}
	if r := do(t, srv, token, "PATCH", "/sobjects/Opportunity/"+a, `{"Referral_Identifier__c":"REF-2"}`); r.status != 204 {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if st, _ := create("REF-1"); st != 201 {
		t.Errorf("the value the update gave up is still taken: %d", st)
	}
	if st, _ := create("Ref-2"); st != 400 {
		t.Errorf("the value the update set is free: %d", st)
	}
	// A composite allOrNone call whose second write fails rolls the first back: its value stays free.
	body := `{"allOrNone":true,"compositeRequest":[` +
		`{"method":"POST","url":"/services/data/v62.0/sobjects/Opportunity","referenceId":"ok","body":{` + validOpp + `,"Referral_Identifier__c":"REF-3"}},` +
		`{"method":"POST","url":"/services/data/v62.0/sobjects/Opportunity","referenceId":"bad","body":{"Name":"x"}}]}`
	if r := do(t, srv, token, "POST", "/composite", body); r.status != 200 {
		t.Fatalf("composite: %d %s", r.status, r.body)
	}
	st, c := create("REF-3")
	if st != 201 {
		t.Errorf("the value of a rolled-back create is taken: %d", st)
	}
	if r := do(t, srv, token, "DELETE", "/sobjects/Opportunity/"+c, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if st, _ := create("REF-3"); st != 201 {
		t.Errorf("the value of a deleted row is taken: %d", st)
	}
}
