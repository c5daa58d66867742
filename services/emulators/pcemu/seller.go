package pcemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
)

// SellerCreate creates a referral a Microsoft seller shares with the partner: Incoming, Shared, New/Pending,
// SalesQualified, invited by "msft". Fields of r fill the rest; it fires referral-created.
func (e *Emulator) SellerCreate(r pc.Referral) (pc.Referral, error) {
	e.count("seller.create")
	return e.create(r, true)
}

// MarketingLead creates a lead Microsoft's marketing passes to the partner: Incoming, Independent,
// MarketingQualified, New/Pending (a lead referral; with coSellOnly off cosell makes it a Salesforce Lead).
func (e *Emulator) MarketingLead(r pc.Referral) (pc.Referral, error) {
	e.count("seller.create")
	return e.createAs(r, true, true)
}

// SellerUpdate merges the non-empty fields of patch into a referral as a Microsoft seller would edit it (deal
// value, closing date, notes, status...), bumps its version and fires referral-updated.
func (e *Emulator) SellerUpdate(id string, patch pc.Referral) (pc.Referral, error) {
	return cloned(e.sellerUpdate(id, clone(&patch)))
}

// sellerUpdate is SellerUpdate answering the stored version, for encoding only; the result shares patch's
// slices and pointers to values (the HTTP handler's patch is its own; SellerUpdate's caller keeps its copy).
func (e *Emulator) sellerUpdate(id string, patch pc.Referral) (pc.Referral, error) {
	e.count("seller.update")
	b, err := json.Marshal(patch)
	if err != nil {
		return pc.Referral{}, err
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return e.sellerEdit(id, func(cur *pc.Referral) (pc.Referral, error) {
		// Server-owned fields are refused when the edit would change them (not silently dropped).
		var doc map[string]any
		for _, k := range []string{"@odata.context", "id", "organizationId", "organizationName", "createdDateTime",
			"updatedDateTime", "eTag", "links", "direction", "type"} {
			if v, ok := m[k]; ok {
				if doc == nil {
					cb, _ := json.Marshal(cur)
					_ = json.Unmarshal(cb, &doc)
				}
				vb, _ := json.Marshal(v)
				db, _ := json.Marshal(doc[k])
				if string(vb) != string(db) {
					return pc.Referral{}, invalid(k, "%s cannot be changed by an edit (it is %s); leave it out.", k, db)
				}
			}
		}
		out := *cur
		mergeFields(reflect.ValueOf(&out).Elem(), reflect.ValueOf(patch))
		return out, nil
	})
}

// mergeFields applies patch to dst as an RFC 7386 JSON merge patch of patch's encoding would (what the seller
// edit did over JSON, at a third of its CPU per change): every field the encoding carries (a non-empty one,
// or any without omitempty) replaces dst's, except an object, which is merged field by field. dst is a
// shallow copy of a stored version: a nested object it changes is copied first, never changed in place.
func mergeFields(dst, patch reflect.Value) {
	for _, f := range mergeFieldsOf(dst.Type()) {
		d, src := dst.Field(f.index), patch.Field(f.index)
		switch {
		case f.kind == reflect.Struct: // encoding/json never omits a struct value
			mergeFields(d, src)
		case f.kind == reflect.Pointer && f.elem.Kind() == reflect.Struct && !src.IsNil():
			cp := reflect.New(f.elem)
			if !d.IsNil() {
				cp.Elem().Set(d.Elem())
			}
			mergeFields(cp.Elem(), src.Elem())
			d.Set(cp)
		case f.omitEmpty && (src.IsZero() || (f.kind == reflect.Slice || f.kind == reflect.Map) && src.Len() == 0):
			// omitted from the patch's encoding: dst's value stays
		default:
			d.Set(src) // null (a nil pointer without omitempty) removes the member: the zero value
		}
	}
}

// mergeField is what mergeFields needs of a struct field that encoding/json encodes.
type mergeField struct {
	index     int
	kind      reflect.Kind
	elem      reflect.Type // a pointer's
	omitEmpty bool
}

// mergeFieldTypes holds each struct type's mergeFields, read from its tags once.
var mergeFieldTypes sync.Map // reflect.Type → []mergeField

func mergeFieldsOf(t reflect.Type) []mergeField {
	if fs, ok := mergeFieldTypes.Load(t); ok {
		return fs.([]mergeField)
	}
	var fs []mergeField
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		mf := mergeField{index: i, kind: f.Type.Kind(), omitEmpty: slices.Contains(strings.Split(opts, ","), "omitempty")}
		if mf.kind == reflect.Pointer {
			mf.elem = f.Type.Elem()
		}
		fs = append(fs, mf)
	}
	mergeFieldTypes.Store(t, fs)
	return fs
}

// SellerClose closes a referral as Microsoft does: substatus Won, Lost, Expired or Declined.
func (e *Emulator) SellerClose(id, substatus string) (pc.Referral, error) {
	return cloned(e.sellerClose(id, substatus))
}

func (e *Emulator) sellerClose(id, substatus string) (pc.Referral, error) {
	e.count("seller.close")
	switch substatus {
	case pc.SubstatusWon, pc.SubstatusLost, pc.SubstatusExpired, pc.SubstatusDeclined:
	default:
		return pc.Referral{}, invalid("substatus", "Cannot close with substatus '%s': use Won, Lost, Expired or Declined.", substatus)
	}
	return e.sellerEdit(id, func(cur *pc.Referral) (pc.Referral, error) {
		out := *cur
		out.Status, out.Substatus = pc.StatusClosed, substatus
		return out, nil
	})
}

// SellerExpire expires a referral the partner did not act on within 14 days (New → Closed/Expired).
func (e *Emulator) SellerExpire(id string) (pc.Referral, error) {
	return cloned(e.sellerExpire(id))
}

func (e *Emulator) sellerExpire(id string) (pc.Referral, error) {
	e.count("seller.expire")
	return e.sellerEdit(id, func(cur *pc.Referral) (pc.Referral, error) {
		if cur.Status != pc.StatusNew {
			return pc.Referral{}, invalid("status", "Only a New referral expires; referral '%s' is %s.", cur.ID, cur.Status)
		}
		out := *cur
		out.Status, out.Substatus = pc.StatusClosed, pc.SubstatusExpired
		return out, nil
	})
}

// cloned is a stored version answered by an exported method: a deep copy the caller may change.
func cloned(r pc.Referral, err error) (pc.Referral, error) {
	if err != nil {
		return r, err
	}
	return clone(&r), nil
}

// sellerEdit stores edit's result as the referral's new version and returns it, for encoding only. edit
// runs outside the emulator's lock on the stored version, which it must not change (a stored version is
// never changed in place, so its result may share nested values with it); when another change was stored
// meanwhile, edit runs again on that one, as if the edits had come one after the other.
func (e *Emulator) sellerEdit(id string, edit func(*pc.Referral) (pc.Referral, error)) (pc.Referral, error) {
	for {
		e.mu.Lock()
		stored, ok := e.referrals[id]
		e.mu.Unlock()
		if !ok {
			return pc.Referral{}, notFound(id)
		}
		if stored.Status == pc.StatusClosed {
			return pc.Referral{}, closedErr(stored)
		}
		upd, err := edit(stored)
		if err == nil {
			err = checkTransition(stored, &upd)
		}
		if err == nil {
			err = validateReferral(&upd)
		}
		if err != nil {
			return pc.Referral{}, err
		}
		e.mu.Lock()
		if e.referrals[id] != stored {
			e.mu.Unlock()
			continue
		}
		out, now := e.commitLocked(stored, upd)
		e.mu.Unlock()
		e.notify(pc.EventReferralUpdated, id, now)
		return out, nil
	}
}

func (e *Emulator) emuCreate(w http.ResponseWriter, r *http.Request) {
	var in pc.Referral
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The body is not a referral: "+err.Error(), "")
		return
	}
	out, err := e.SellerCreate(in)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeReferral(w, http.StatusCreated, out)
}

// emuGet shows one referral as a person at Partner Center would look it up: the status page's demo link
// into "Partner Center" (no token, like the other /_emulator/ endpoints).
func (e *Emulator) emuGet(w http.ResponseWriter, r *http.Request) {
	ref, err := e.Get(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeReferral(w, http.StatusOK, ref)
}

func (e *Emulator) emuUpdate(w http.ResponseWriter, r *http.Request) {
	var in pc.Referral
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The body is not a referral: "+err.Error(), "")
		return
	}
	out, err := e.sellerUpdate(r.PathValue("id"), in)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeReferral(w, http.StatusOK, out)
}

func (e *Emulator) emuClose(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Substatus string `json:"substatus"`
	}
	if err := decodeStrict(r.Body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", "The body must be {\"substatus\": ...}: "+err.Error(), "")
		return
	}
	out, err := e.sellerClose(r.PathValue("id"), in.Substatus)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeReferral(w, http.StatusOK, out)
}

func (e *Emulator) emuExpire(w http.ResponseWriter, r *http.Request) {
	out, err := e.sellerExpire(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeReferral(w, http.StatusOK, out)
}

// emuList is GET /_emulator/referrals: every referral, or with ?count=true only how many there are and how
// many name an Opportunity (externalReferenceId) and how many different Opportunities they name, so a harness can wait for records without the emulator
// encoding all of them on each poll.
func (e *Emulator) emuList(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("count") != "true" {
		writeJSON(w, http.StatusOK, e.Referrals())
		return
	}
	e.mu.Lock()
	total, linked, distinct := len(e.order), e.linked, len(e.extRefs)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]int{"total": total, "withExternalReferenceId": linked, "distinctExternalReferenceIds": distinct})
}

func (e *Emulator) emuCounts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, e.Counts())
}

func (e *Emulator) emuFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := decodeStrict(r.Body, &f); err != nil {
		writeError(w, http.StatusBadRequest, "invalidRequest", fmt.Sprintf("The body is not a fault set: %v", err), "")
		return
	}
	if f.ExpireTokens {
		e.ExpireTokens()
		f.ExpireTokens = false
	}
	e.SetFaults(f)
	writeJSON(w, http.StatusOK, f)
}
