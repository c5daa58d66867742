// Command screenshot starts the whole system with demo traffic (including a Salesforce outage that parks a
// message in the dead-letter stream, and an Opportunity whose sync is switched off), lets the status page
// gather samples, signs in to it with headless Chromium as the generated operator, and saves three
// screenshots: the overview, one deal's timeline and the dead letters. `make screenshot` runs it and
// writes them to docs/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/chromedp/chromedp"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/auditor/screenshot/browser"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func main() {
	out := flag.String("o", "docs", "the directory the PNGs are written to (status-page.png, status-timeline.png, status-deadletters.png)")
	traffic := flag.Duration("traffic", 40*time.Second, "how long to generate demo traffic before the screenshots")
	flag.Parse()
	if err := run(*out, *traffic); err != nil {
		fmt.Fprintln(os.Stderr, "screenshot:", err)
		os.Exit(1)
	}
}

func run(out string, traffic time.Duration) error {
	exe, err := browser.Find()
	if err != nil {
		return err
	}
	ctx := context.Background()
	s, err := stack.Start(ctx, stack.Options{
		Vars: map[string]string{"COSELL_SF_POLL_INTERVAL": "300ms", "COSELL_MAX_DELIVER": "3", "COSELL_ACK_WAIT": "5s",
			"COSELL_AUDIT_SUMMARY_INTERVAL": "1s", "COSELL_AUDIT_SAMPLE_INTERVAL": "1s", "COSELL_AUDIT_HISTORY": "2m"},
		Consume: platform.ConsumeOptions{MaxWait: 200 * time.Millisecond, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second},
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	fmt.Println("status page:", s.Status)

	deals := []struct {
		name  string
		value float64
	}{{"Contoso data platform", 125000}, {"Northwind analytics", 42000}, {"Litware ERP", 99000}, {"Adatum migration", 18500}}
	end := time.Now().Add(traffic)
	var refs, opps []string
	for i := 0; time.Now().Before(end); i++ {
		switch {
		case i < len(deals):
			v := deals[i].value
			r, err := s.PC.SellerCreate(pc.Referral{Name: deals[i].name,
				CustomerProfile: &pc.CustomerProfile{Name: deals[i].name + " Ltd", Address: &pc.Address{AddressLine1: "1 Main St", City: "Redmond", State: "WA", PostalCode: "98052", Country: "US"}},
				Consent:         &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
				Details:         &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: "2027-02-15T00:00:00Z", Notes: "demo"}})
			if err != nil {
				return err
			}
			refs = append(refs, r.ID)
		case i == len(deals):
			for _, name := range []string{"Fabrikam landing zone", "Tailspin modernisation"} {
				acc, err := s.SF.Insert(sf.ObjectAccount, map[string]any{"Name": name + " GmbH", "BillingCountry": "DE", "BillingPostalCode": "10115"})
				if err != nil {
					return err
				}
				id, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": name, "AccountId": acc, "Amount": 48000.0,
					"CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true})
				if err != nil {
					return err
				}
				opps = append(opps, id)
			}
		case i == len(deals)+6:
			// A seller switches sync off on one Opportunity and edits it: the change is held, and the page
			// lists the deal under "Needs attention".
			if err := s.SF.Update(sf.ObjectOpportunity, opps[1], map[string]any{sf.FieldSyncWithPartnerCenter: false, "Amount": 51000.0}); err != nil {
				return err
			}
		case i == len(deals)+2:
			// A Salesforce outage longer than the retry budget: this referral's create is parked.
			s.SF.FailNextCalls(1 << 20)
			v := 7300.0
			if _, err := s.PC.SellerCreate(pc.Referral{Name: "Wingtip security (created during an outage)",
				CustomerProfile: &pc.CustomerProfile{Name: "Wingtip Toys", Address: &pc.Address{AddressLine1: "2 Main St", City: "Seattle", State: "WA", PostalCode: "98101", Country: "US"}},
				Consent:         &pc.Consent{ConsentToToShareInfoWithOthers: true, ConsentToContact: true},
				Details:         &pc.Details{DealValue: &v, Currency: "USD", ClosingDateTime: "2027-05-01T00:00:00Z"}}); err != nil {
				return err
			}
		case i == len(deals)+4:
			s.SF.ResetFaults()
		default:
			// Microsoft sellers keep editing deal values.
			v := float64(10000 + 1000*i)
			if _, err := s.PC.SellerUpdate(refs[i%len(refs)], pc.Referral{Details: &pc.Details{DealValue: &v}}); err != nil {
				return err
			}
		}
		time.Sleep(time.Second) // pacing of the demo traffic
	}
	if errs := s.Errors(); len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	bctx, cancel, err := browser.Start(ctx, exe, 1400, 1000)
	if err != nil {
		return err
	}
	defer cancel()
	tctx, stop := context.WithTimeout(bctx, 2*time.Minute)
	defer stop()
	if err := browser.Login(tctx, s.Status, s.Operator.Name, s.Operator.Secret); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	shots := []struct {
		file, path, wait string
		full             bool
	}{
		{"status-page.png", "/", "#overview", true},
		{"status-timeline.png", "/link?id=" + url.QueryEscape(refs[0]), "table", true},
		{"status-deadletters.png", "/#deadletters", "#deadletters", false},
	}
	for _, sh := range shots {
		var png []byte
		err := chromedp.Do(tctx, chromedp.Navigate(s.Status+sh.path), browser.Loaded(sh.wait))
		if err == nil && sh.full {
			png, err = chromedp.Run(tctx, chromedp.FullScreenshot(100))
		} else if err == nil {
			png, err = chromedp.Run(tctx, chromedp.CaptureScreenshot())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sh.path, err)
		}
		file := filepath.Join(out, sh.file)
		if err := os.WriteFile(file, png, 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d bytes)\n", file, len(png))
	}
	return nil
}
