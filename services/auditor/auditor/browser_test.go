package auditor_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cosell-dev/cosell/contracts"
	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	"github.com/cosell-dev/cosell/services/auditor/auditor"
	"github.com/cosell-dev/cosell/services/auditor/screenshot/browser"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// chromium finds the browser, or skips the test with the reason; with COSELL_REQUIRE_BROWSER=1 (CI's
// .ci/run, which installs Chromium) a missing browser fails the test instead.
func chromium(t *testing.T) string {
	t.Helper()
	exe, err := browser.Find()
	if err == nil {
		return exe
	}
	if os.Getenv("COSELL_REQUIRE_BROWSER") == "1" {
		t.Fatalf("COSELL_REQUIRE_BROWSER=1 but %v", err)
	}
	t.Skipf("skipped, %v (CI sets COSELL_REQUIRE_BROWSER=1 and runs it)", err)
	return ""
}

// page is one browser tab on the status page of a stack.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func (p page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

func (p page) open(path string) {
	p.t.Helper()
	p.do("open "+path, chromedp.Navigate(p.base+path), browser.Loaded("body"))
}

// text is what a person sees in the element sel selects; "" when there is none.
func (p page) text(sel string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
	if err != nil {
		p.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// waitText waits until the element sel shows want (the page may reload itself meanwhile).
func (p page) waitText(sel, want string, within time.Duration) {
	p.t.Helper()
	testkit.Eventually(p.t, within, fmt.Sprintf("%q in %s", want, sel), func() (bool, string) {
		s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {innerText: ""}).innerText`, sel)))
		if err != nil {
			return false, err.Error() // a reload under way
		}
		return strings.Contains(s, want), s
	})
}

func (p page) attr(sel, name string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {getAttribute: () => ""}).getAttribute(%q) || ""`, sel, name)))
	if err != nil {
		p.t.Fatalf("read %s %s: %v", sel, name, err)
	}
	return s
}

func deadLetterOf(t *testing.T, s *stack.Stack, referralID string) auditor.DeadLetterEntry {
	t.Helper()
	ctx := context.Background()
	l, err := s.Auditor.Link(ctx, referralID)
	if err != nil {
		t.Fatal(err)
	}
	dls, err := s.Auditor.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if d.LinkID == l.ID {
			return d
		}
	}
	t.Fatalf("no dead letter of %s among %+v", l.ID, dls)
	return auditor.DeadLetterEntry{}
}

// TestStatusPageInChromium drives the real status page of the in-process system in headless Chromium as
// a co-sell operations person would: the sign-in, a deal found by name with both records linked, its
// timeline's before → after refreshing by itself, the dead letters with their reason and command, a
// viewer refused a re-drive (on the page), an operator's re-drive of one and then of all carried out, and
// the changes filtered by outcome.
func TestStatusPageInChromium(t *testing.T) {
	exe := chromium(t)
	opts := stacktest.Options(t)
	opts.Vars["COSELL_MAX_DELIVER"] = "3"
	s := stacktest.Start(t, opts)

	good, err := s.PC.SellerCreate(stacktest.SellerReferral("Contoso data platform", 125000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "Contoso's Opportunity", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, good.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	// A Salesforce outage longer than the retry budget parks two creates.
	s.SF.FailNextCalls(1 << 20)
	wingtip, err := s.PC.SellerCreate(stacktest.SellerReferral("Wingtip security", 7300))
	if err != nil {
		t.Fatal(err)
	}
	fabrikam, err := s.PC.SellerCreate(stacktest.SellerReferral("Fabrikam landing zone", 48000))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "two creates dead-lettered", func() (bool, string) {
		dls, err := s.Auditor.DeadLetters(context.Background())
		return err == nil && len(dls) == 2, fmt.Sprintf("%d parked, %v", len(dls), err)
	})
	s.SF.ResetFaults()
	parked, kept := deadLetterOf(t, s, wingtip.ID), deadLetterOf(t, s, fabrikam.ID)

	bctx, cancel, err := browser.Start(context.Background(), exe, 1280, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	ctx, stop := context.WithTimeout(bctx, 3*time.Minute)
	defer stop()
	p := page{t: t, ctx: ctx, base: s.Status}

	// Nobody gets in without signing in.
	p.open("/")
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.Contains(loc, "/login") {
		t.Fatalf("the page without a login went to %q (%v), want the sign-in page", loc, err)
	}

	// A viewer sees the dead letters, why they were parked and the command, but cannot re-drive.
	if err := browser.Login(ctx, s.Status, s.Viewer.Name, s.Viewer.Secret); err != nil {
		t.Fatalf("sign in as viewer: %v", err)
	}
	p.waitText("form.who", "Signed in as viewer (viewer)", 10*time.Second)
	dl := p.text("#deadletters")
	for _, want := range []string{"Wingtip security", "Fabrikam landing zone Customer", "UNKNOWN_EXCEPTION",
		fmt.Sprintf("cosell dlq retry %d", parked.Seq), "cosell dlq retry --all", "Re-drive (operators only)"} {
		if !strings.Contains(dl, want) {
			t.Errorf("the dead letters a viewer sees lack %q:\n%s", want, dl)
		}
	}
	if all := p.text(`form[action="/deadletters/retry"]`); !strings.Contains(all, "Re-drive all (operators only)") {
		t.Errorf("a viewer's Re-drive all reads %q", all)
	}
	form := fmt.Sprintf(`form[action="/deadletters/%d/retry"]`, parked.Seq)
	if p.attr(form+" button", "disabled") == "" && !strings.Contains(p.text(form), "operators only") {
		t.Errorf("a viewer's re-drive button is not disabled")
	}
	// Submitting the form anyway (the button is only a hint) is refused by the server, on the page.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).submit(), true)`, form))); err != nil {
		t.Fatal(err)
	}
	p.waitText("body", "viewer is a viewer: re-drive and purge need the operator role", 10*time.Second)
	if d := deadLetterOf(t, s, wingtip.ID); d.Seq != parked.Seq {
		t.Fatalf("the viewer's re-drive changed the dead letter: %+v", d)
	}
	if n := len(stacktest.OpportunitiesFor(s, wingtip.ID)); n != 0 {
		t.Fatalf("the viewer's re-drive created %d Opportunity", n)
	}

	// An operator re-drives one; it is carried out and leaves the list.
	p.open("/")
	if err := browser.Logout(ctx); err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if err := browser.Login(ctx, s.Status, s.Operator.Name, s.Operator.Secret); err != nil {
		t.Fatalf("sign in as operator: %v", err)
	}
	p.waitText("form.who", "Signed in as "+s.Operator.Name+" (operator)", 10*time.Second)
	p.do("re-drive", chromedp.Click(chromedp.CSS(form+" button")), browser.Loaded("#flash"))
	if f := p.text("#flash"); !strings.Contains(f, fmt.Sprintf("re-driven dead letter %d", parked.Seq)) {
		t.Errorf("after the re-drive the page says %q", f)
	}
	testkit.Eventually(t, 30*time.Second, "the re-driven create carried out", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, wingtip.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	p.open("/")
	if dl := p.text("#deadletters"); strings.Contains(dl, "Wingtip security") || !strings.Contains(dl, "Fabrikam landing zone") {
		t.Errorf("after re-driving Wingtip's dead letter the list shows:\n%s", dl)
	}
	if d := deadLetterOf(t, s, fabrikam.ID); d.Seq != kept.Seq {
		t.Errorf("the other dead letter changed: %+v", d)
	}

	// Changes filtered by outcome: Fabrikam's create is parked, Contoso's written.
	p.open("/?outcome=" + strings.ReplaceAll("dead letter", " ", "+") + "#changes")
	if ch := p.text("#changes table"); !strings.Contains(ch, "Fabrikam landing zone") || strings.Contains(ch, "Contoso data platform") {
		t.Errorf("the dead-letter changes are:\n%s", ch)
	}
	p.open("/?outcome=written#changes")
	if ch := p.text("#changes table"); !strings.Contains(ch, "Contoso data platform") || !strings.Contains(ch, contracts.StageSFWriter) || strings.Contains(ch, "Fabrikam landing zone") {
		t.Errorf("the written changes are:\n%s", ch)
	}

	// Find the deal by name: who and what it is, both records linked, its timeline.
	p.open("/")
	p.do("search", chromedp.SendKeys(chromedp.CSS(`form.find input[name="id"]`), "wingtip"),
		chromedp.Click(chromedp.CSS(`form.find button`)), browser.Loaded("#deal"))
	deal := p.text("#deal")
	opp := stacktest.OpportunitiesFor(s, wingtip.ID)[0]["Id"].(string)
	for _, want := range []string{"Wingtip security", "Wingtip security Customer", "7,300 USD", wingtip.ID, opp} {
		if !strings.Contains(deal, want) {
			t.Errorf("the deal lacks %q:\n%s", want, deal)
		}
	}
	// Both records are linked, into the emulators here (COSELL_STATUS_*_URL), and the links open them.
	for _, l := range []struct{ system, base, id string }{{"Partner Center", s.PCURL, wingtip.ID}, {"Salesforce", s.SFURL, opp}} {
		p.open("/link?id=wingtip")
		href := p.attr(fmt.Sprintf(`#deal a[href^=%q]`, l.base), "href")
		if !strings.HasSuffix(href, "/"+l.id) {
			t.Errorf("no link to the record in %s (%s…): %q", l.system, l.base, href)
			continue
		}
		p.do("follow "+href, chromedp.Navigate(href), browser.Loaded("body"))
		if got := p.text("body"); !strings.Contains(got, l.id) || !strings.Contains(got, "Wingtip security") {
			t.Errorf("the %s link %s opens:\n%.300s", l.system, href, got)
		}
	}
	p.open("/link?id=wingtip")
	tl := p.text("#timeline")
	for _, want := range []string{"created → Salesforce", "dealValue: — → 7300 (Partner Center)", "dead-letter", "re-driven", "sf-writer"} {
		if !strings.Contains(tl, want) {
			t.Errorf("the timeline lacks %q:\n%s", want, tl)
		}
	}
	// A seller edits the deal value; the open timeline shows before → after without anyone reloading it.
	v := 9100.0
	if _, err := s.PC.SellerUpdate(wingtip.ID, pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
		t.Fatal(err)
	}
	p.waitText("#timeline", "dealValue: 7300 → 9100 (Partner Center)", 60*time.Second)

	// Re-drive all: the operator's button carries out the rest, and the page then says there is nothing parked.
	p.open("/")
	p.do("re-drive all", chromedp.Click(chromedp.CSS("#redrive-all")), browser.Loaded("#flash"))
	if f := p.text("#flash"); !strings.Contains(f, "re-driven 1 dead letter(s)") {
		t.Errorf("after Re-drive all the page says %q", f)
	}
	testkit.Eventually(t, 30*time.Second, "Fabrikam's re-driven create carried out", func() (bool, string) {
		n := len(stacktest.OpportunitiesFor(s, fabrikam.ID))
		return n == 1, fmt.Sprintf("%d opportunities", n)
	})
	p.open("/")
	if dl := p.text("#deadletters"); !strings.Contains(dl, "No dead letters.") {
		t.Errorf("after Re-drive all the dead letters show:\n%s", dl)
	}
}
