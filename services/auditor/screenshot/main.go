// Command screenshot starts the whole system with demo traffic (including a Salesforce outage that parks a
// message in the dead-letter stream), lets the status page gather a couple of minutes of samples, and
// saves a screenshot of the page taken by headless Chromium. `make screenshot` runs it; it doubles as a
// check that the page renders in a real browser.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	pc "github.com/cosell-dev/cosell/contracts/partnercenter"
	sf "github.com/cosell-dev/cosell/contracts/salesforce"
	"github.com/cosell-dev/cosell/services/internal/harness/stack"
	"github.com/cosell-dev/cosell/services/internal/platform"
)

func main() {
	out := flag.String("o", "docs/status-page.png", "where to write the PNG")
	browser := flag.String("chromium", "chromium", "the Chromium binary (Debian: apt-get install chromium)")
	traffic := flag.Duration("traffic", 40*time.Second, "how long to generate demo traffic before the screenshot")
	flag.Parse()
	if err := run(*out, *browser, *traffic); err != nil {
		fmt.Fprintln(os.Stderr, "screenshot:", err)
		os.Exit(1)
	}
}

func run(out, browser string, traffic time.Duration) error {
	if _, err := exec.LookPath(browser); err != nil {
		return fmt.Errorf("%s not found (Debian: apt-get install -y chromium): %w", browser, err)
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
	var refs []string
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
				if _, err := s.SF.Insert(sf.ObjectOpportunity, map[string]any{"Name": name, "AccountId": acc, "Amount": 48000.0,
					"CurrencyIsoCode": "EUR", "CloseDate": "2027-03-31", "StageName": "Qualification", sf.FieldSyncWithPartnerCenter: true}); err != nil {
					return err
				}
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
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "cosell-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, browser, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--hide-scrollbars", "--user-data-dir="+profile, "--window-size=1400,2200", "--screenshot="+abs, s.Status+"/")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("chromium: %w\n%s", err, b)
	}
	st, err := os.Stat(abs)
	if err != nil || st.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot at %s: %v", abs, err)
	}
	fmt.Printf("wrote %s (%d bytes)\n", out, st.Size())
	return nil
}
