package deploytest

import (
	"context"
	"errors"
	"fmt"
	"github.com/nats-io/nats.go"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/internal/platform"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// stageBus gives every stage its own user from the committed permission set; provisioning runs as admin.
func stageBus(ns *server.Server) func(stage string) map[string]string {
	return func(stage string) map[string]string {
		user := stage
		if !slices.Contains(contracts.Stages(), stage) {
			user = adminUser
		}
		return map[string]string{"COSELL_NATS_URL": ns.ClientURL(), "COSELL_NATS_USER": user, "COSELL_NATS_PASSWORD": password(user)}
	}
}

func adminJS(t *testing.T, ns *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(adminUser, password(adminUser)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Every stage runs the real pipeline under its own least-privilege user: both directions, the auditor's
// reads, and each consumer dead-lettering a poison message — with no permission refused anywhere.
func TestEveryStageDoesItsJobUnderItsOwnUser(t *testing.T) {
	ns := startAuthServer(t)
	elog := &errorLog{}
	s := startStack(t, slog.New(elog), stageBus(ns))
	ctx := context.Background()

	// Partner Center → Salesforce: pc-ingest, mapper, sf-writer, mapper's outcomes, auditor.
	r, err := s.PC.SellerCreate(stacktest.SellerReferral("Fabrikam under least privilege", 50000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "opportunity from the referral", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, r.ID))
		return n == 1, fmt.Sprintf("%d opportunities; errors: %v", n, elog.matching("violation"))
	})

	// Salesforce → Partner Center: sf-ingest, mapper, pc-writer.
	acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": "Least Privilege GmbH", "BillingCountry": "DE", "BillingPostalCode": "10115", "BillingCity": "Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	oppID, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{
		"Name": "Least privilege landing zone", "AccountId": acc, "Amount": 42000, "CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31",
		"StageName": "Qualification", "Description": "Needs Azure landing zone", sf.FieldSyncWithPartnerCenter: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "referral from the opportunity", func() (bool, string) {
		n := 0
		for _, ref := range s.PC.Referrals() {
			if ref.ExternalReferenceID == oppID {
				n++
			}
		}
		return n == 1, fmt.Sprintf("%d referrals; errors: %v", n, elog.matching("violation"))
	})

	// The auditor's reads: link listing (KV watch), a timeline (ordered consumer), the dead letters.
	testkit.Eventually(t, 20*time.Second, "both links listed with a timeline", func() (bool, string) {
		links, err := s.Auditor.ListLinks(ctx)
		if err != nil || len(links) < 2 {
			return false, fmt.Sprintf("links %d err %v", len(links), err)
		}
		tl, err := s.Auditor.Timeline(ctx, links[0].ID)
		return err == nil && len(tl) > 0, fmt.Sprintf("timeline %d err %v", len(tl), err)
	})
	if _, err := s.Auditor.DeadLetters(ctx); err != nil {
		t.Errorf("auditor cannot read the dead letters: %v", err)
	}

	// Each consumer dead-letters a poison message under its own dead-letter subject.
	js := adminJS(t, ns)
	for _, c := range contracts.Consumers() {
		if c.Stream == contracts.StreamDeadLetter {
			continue // its input is the dead letters themselves
		}
		subj := strings.TrimSuffix(c.FilterSubjects[0], ">") + "deploytest-" + c.Durable
		if _, err := js.Publish(ctx, subj, []byte("not a cloud event")); err != nil {
			t.Fatalf("publish poison to %s: %v", subj, err)
		}
	}
	dlq, err := js.Stream(ctx, contracts.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range contracts.Consumers() {
		if c.Stream == contracts.StreamDeadLetter {
			continue
		}
		want := platform.DeadLetterSubject(c.Stage, "x.deploytest-"+c.Durable)
		testkit.Eventually(t, 20*time.Second, c.Durable+" dead-letters its poison", func() (bool, string) {
			_, err := dlq.GetLastMsgForSubject(ctx, want)
			return err == nil, fmt.Sprintf("%s: %v; errors: %v", want, err, elog.matching("violation"))
		})
	}
	if v := append(elog.matching("permissions violation"), elog.matching("authorization violation")...); len(v) > 0 {
		t.Fatalf("refused under the generated permission set:\n%s", strings.Join(v, "\n"))
	}
}

// What each stage may publish, written out by hand as the specification the generator must meet.
var mayPublish = map[string][]string{
	contracts.StagePCIngest: {contracts.SubjectReferralNotified, contracts.SubjectReferralObserved},
	contracts.StageSFIngest: {contracts.SubjectOpportunityObserved},
	contracts.StageMapper:   {contracts.SubjectReferralRequested, contracts.SubjectOpportunityRequested, contracts.SubjectAudit},
	contracts.StagePCWriter: {contracts.SubjectReferralWritten, contracts.SubjectReferralFailed, contracts.SubjectReferralObserved},
	contracts.StageSFWriter: {contracts.SubjectOpportunityWritten, contracts.SubjectOpportunityFailed},
	// The auditor re-drives the status page operators' dead letters to wherever they were parked from.
	contracts.StageAuditor: eventRoots(),
}

// eventRoots are the subject roots of every stream but the dead letters'.
func eventRoots() []string {
	var out []string
	for _, st := range contracts.Streams() {
		if st.Name == contracts.StreamDeadLetter {
			continue
		}
		for _, p := range st.Subjects {
			out = append(out, strings.TrimSuffix(p, ".>"))
		}
	}
	return out
}

// violations collects the permission errors the server reports to one connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
}

func (v *violations) has(kind, subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range v.errs {
		if strings.Contains(strings.ToLower(e), "permissions violation for "+kind) && strings.Contains(e, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// Each stage's user is refused everything outside its job: other stages' events and dead letters,
// other buckets, other durables, other stages' replies, and stream administration.
func TestEveryStageIsRefusedOutsideItsJob(t *testing.T) {
	ns := startAuthServer(t)
	ctx := context.Background()
	admin, err := platform.Connect(ctx, platform.BusConfig{URL: ns.ClientURL(), User: adminUser, Password: password(adminUser),
		AckWait: 2 * time.Second, MaxDeliver: 8}, "provision", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	if err := admin.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	adm := adminJS(t, ns)

	if len(mayPublish) != len(contracts.Stages()) {
		t.Fatalf("mayPublish covers %d stages, contracts has %d", len(mayPublish), len(contracts.Stages()))
	}
	for _, stage := range contracts.Stages() {
		t.Run(stage, func(t *testing.T) {
			v := &violations{}
			nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(stage, password(stage)),
				nats.CustomInboxPrefix(platform.InboxPrefix(stage)), nats.ErrorHandler(v.handler))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			refused := func(kind, subject string) {
				t.Helper()
				testkit.Eventually(t, 5*time.Second, stage+" refused "+kind+" "+subject, func() (bool, string) {
					return v.has(kind, subject), fmt.Sprint(v.errs)
				})
			}
			pubCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()

			// Events: exactly the stage's own subjects are accepted by the stream.
			for _, st := range contracts.Streams() {
				if st.Name == contracts.StreamDeadLetter {
					continue
				}
				for _, pattern := range st.Subjects {
					root := strings.TrimSuffix(pattern, ".>")
					subj := root + ".deploytest-" + stage
					if slices.Contains(mayPublish[stage], root) {
						if _, err := js.Publish(pubCtx, subj, []byte("{}")); err != nil {
							t.Errorf("%s may not publish its own %s: %v", stage, subj, err)
						}
						continue
					}
					if err := nc.Publish(subj, []byte("{}")); err != nil {
						t.Fatal(err)
					}
					_ = nc.Flush()
					refused("publish", subj)
					if _, err := stream(t, adm, st.Name).GetLastMsgForSubject(ctx, subj); !errors.Is(err, jetstream.ErrMsgNotFound) {
						t.Errorf("%s's refused publish to %s was stored (err %v)", stage, subj, err)
					}
				}
			}
			// Dead letters: only under its own stage token.
			for _, other := range contracts.Stages() {
				if other == stage {
					continue
				}
				subj := platform.DeadLetterSubject(other, "x.deploytest")
				_ = nc.Publish(subj, []byte("{}"))
				_ = nc.Flush()
				refused("publish", subj)
			}
			// Buckets it does not write.
			for _, b := range contracts.Buckets() {
				writes := map[string][]string{
					contracts.StagePCIngest: {contracts.BucketCheckpoints, contracts.BucketLeases, contracts.BucketPCCredentials},
					contracts.StageSFIngest: {contracts.BucketCheckpoints, contracts.BucketLeases},
					contracts.StageMapper:   {contracts.BucketLinks},
					contracts.StagePCWriter: {contracts.BucketApplied, contracts.BucketPCCredentials, contracts.BucketLeases},
					contracts.StageSFWriter: {contracts.BucketApplied}}
				if slices.Contains(writes[stage], b) {
					continue
				}
				subj := "$KV." + b + ".deploytest"
				_ = nc.Publish(subj, []byte("x"))
				_ = nc.Flush()
				refused("publish", subj)
			}
			// The Partner Center refresh token: read (and rotated) by the two Partner Center stages only.
			credsSubj := "$JS.API.DIRECT.GET.KV_" + contracts.BucketPCCredentials
			if stage == contracts.StagePCIngest || stage == contracts.StagePCWriter {
				kv, err := js.KeyValue(pubCtx, contracts.BucketPCCredentials)
				if err != nil {
					t.Fatalf("%s cannot open %s: %v", stage, contracts.BucketPCCredentials, err)
				}
				if _, err := kv.Get(pubCtx, "partner-center.refresh-token"); !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Errorf("%s reading the refresh token: %v (want key not found)", stage, err)
				}
			} else {
				_ = nc.PublishRequest(credsSubj+".$KV."+contracts.BucketPCCredentials+".partner-center.refresh-token", nc.NewRespInbox(), nil)
				_ = nc.Flush()
				refused("publish", credsSubj+".$KV."+contracts.BucketPCCredentials+".partner-center.refresh-token")
			}
			// Other stages' durables.
			for _, c := range contracts.Consumers() {
				if c.Stage == stage {
					if _, err := js.Consumer(pubCtx, c.Stream, c.Durable); err != nil {
						t.Errorf("%s cannot bind its own durable %s: %v", stage, c.Durable, err)
					}
					continue
				}
				subj := "$JS.API.CONSUMER.MSG.NEXT." + c.Stream + "." + c.Durable
				_ = nc.PublishRequest(subj, nc.NewRespInbox(), []byte(`{"batch":1}`))
				_ = nc.Flush()
				refused("publish", subj)
			}
			// Another stage's replies (which would carry its pull deliveries).
			other := contracts.StageMapper
			if stage == other {
				other = contracts.StagePCWriter
			}
			subj := platform.InboxPrefix(other) + ".>"
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			refused("subscription", subj)
			// Stream administration is the provisioning identity's.
			del := "$JS.API.STREAM.DELETE." + contracts.StreamObserved
			_ = nc.PublishRequest(del, nc.NewRespInbox(), nil)
			_ = nc.Flush()
			refused("publish", del)
		})
	}
	if _, err := stream(t, adm, contracts.StreamObserved).Info(ctx); err != nil {
		t.Fatalf("a stage deleted a stream: %v", err)
	}
}

func stream(t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAuditorRedrivesAndPurgesUnderItsOwnUser: the status page's Re-drive and Purge run in the auditor,
// under its least-privilege NATS user: a message a stage parked is published again on its subject and
// leaves the dead-letter stream, another is purged, and both are on the link's timeline.
func TestAuditorRedrivesAndPurgesUnderItsOwnUser(t *testing.T) {
	ns := startAuthServer(t)
	ctx := context.Background()
	cfg := func(user string) platform.BusConfig {
		return platform.BusConfig{URL: ns.ClientURL(), User: user, Password: password(user), AckWait: 2 * time.Second,
			MaxDeliver: 8, Replicas: 1, MaxAge: time.Hour, DuplicateWindow: time.Minute}
	}
	admin, err := platform.Connect(ctx, cfg(adminUser), "provision", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	if err := admin.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// The mapper parks two observed snapshots under its own dead-letter subjects, as its consumer loop does.
	mapperBus, err := platform.Connect(ctx, cfg(contracts.StageMapper), contracts.StageMapper, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mapperBus.Close)
	for _, ref := range []string{"R-redrive", "R-purge"} {
		subject := contracts.SubjectReferralObserved + "." + ref
		dl := contracts.DeadLetter{Stage: contracts.StageMapper, Stream: contracts.StreamObserved, Consumer: "mapper-observed",
			Subject: subject, Header: map[string][]string{"ce-id": {"pc/" + ref + "/1"}}, Data: []byte(`{}`), Reason: "poison", At: time.Now().UTC()}
		e, err := platform.NewEvent(contracts.StreamObserved+"/"+ref, contracts.TypeDeadLetter, contracts.StageMapper, subject, dl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mapperBus.Publish(ctx, platform.DeadLetterSubject(contracts.StageMapper, subject), e); err != nil {
			t.Fatal(err)
		}
	}
	bus, err := platform.Connect(ctx, cfg(contracts.StageAuditor), contracts.StageAuditor, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	a, err := auditor.New(ctx, bus, nil)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	testkit.Eventually(t, 10*time.Second, "both dead letters listed by the auditor", func() (bool, string) {
		dls, err := a.DeadLetters(ctx)
		for _, d := range dls {
			seqs[d.Subject] = d.Seq
		}
		return len(seqs) == 2, fmt.Sprint(dls, err)
	})
	op := auditor.WithPrincipal(ctx, auditor.Principal{Name: "ann@contoso.com", Role: auditor.RoleOperator, Via: "session"})
	if _, err := a.Retry(op, seqs[contracts.SubjectReferralObserved+".R-redrive"]); err != nil {
		t.Fatalf("re-drive under the auditor's user: %v", err)
	}
	if _, err := a.Purge(op, seqs[contracts.SubjectReferralObserved+".R-purge"]); err != nil {
		t.Fatalf("purge under the auditor's user: %v", err)
	}
	if left, err := a.DeadLetters(ctx); err != nil || len(left) != 0 {
		t.Errorf("dead letters left: %+v %v", left, err)
	}
	adm := adminJS(t, ns)
	if m, err := stream(t, adm, contracts.StreamObserved).GetLastMsgForSubject(ctx, contracts.SubjectReferralObserved+".R-redrive"); err != nil {
		t.Errorf("the re-driven snapshot is not on its subject: %v", err)
	} else if m.Header.Get("ce-id") != "pc/R-redrive/1" {
		t.Errorf("re-driven message headers %v", m.Header)
	}
	for ref, kind := range map[string]string{"R-redrive": contracts.DecisionRedriven, "R-purge": contracts.DecisionPurged} {
		tl, err := a.Timeline(ctx, contracts.LinkIDFor(contracts.PartnerCenter, ref))
		found := false
		for _, d := range tl {
			found = found || (d.Kind == kind && d.By == "ann@contoso.com (operator, session)")
		}
		if !found {
			t.Errorf("%s: no %s decision by the operator on the timeline: %+v %v", ref, kind, tl, err)
		}
	}
}
