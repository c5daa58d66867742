// Package browser drives headless Chromium (through the DevTools protocol, github.com/chromedp/chromedp)
// for the status page's browser test and `make screenshot`: one place that knows how to start it on these
// machines and how to sign in to the page.
package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium is returned when no Chromium binary is found.
var ErrNoChromium = errors.New("no Chromium found: install it (Debian: apt-get install -y chromium) or set COSELL_CHROMIUM to its path")

// Find returns the Chromium to run: $COSELL_CHROMIUM, else /usr/bin/chromium (Debian's package), else
// chromium, chromium-browser or google-chrome on PATH.
func Find() (string, error) {
	if p := os.Getenv("COSELL_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("COSELL_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoChromium
}

// Start runs a headless Chromium with a fresh profile and returns a context for chromedp actions on its
// first tab; cancel closes the browser and removes the profile. The flags keep it from reaching out to
// the network on its own (update checks, sync, QUIC probes), which machines without outside access refuse.
func Start(ctx context.Context, exe string, width, height int) (context.Context, context.CancelFunc, error) {
	profile, err := os.MkdirTemp("", "cosell-chromium-")
	if err != nil {
		return nil, nil, err
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx)
	cancel := func() {
		cancelTab()
		cancelAlloc()
		_ = os.RemoveAll(profile)
	}
	// Start the browser now, so a Chromium that cannot start fails here with its reason.
	if err := chromedp.Do(bctx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("start %s: %w", exe, err)
	}
	return bctx, cancel, nil
}

// Login signs in on the status page at base (http://host:port) through its login form, as a person would.
func Login(ctx context.Context, base, name, secret string) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(base+"/login"),
		Loaded(`input[name="user"]`),
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), name),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), secret),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		Loaded(`form.who`),
	)
}

// Loaded waits until the page shows sel and has loaded completely: after a click that navigates, the
// element can show while the rest of the page is still arriving.
// It asks again while a navigation replaces the page (an evaluation in the page being left fails), until
// ctx ends.
func Loaded(sel string) chromedp.Action[chromedp.Void] {
	check := chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null && document.readyState === "complete"`, sel))
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if ok, err := check(ctx, t); err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", sel, ctx.Err())
			case <-tick.C:
			}
		}
	})
}

// Logout signs out with the page's Sign out button.
func Logout(ctx context.Context) error {
	return chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form.who button[type="submit"]`)),
		Loaded(`input[name="user"]`),
	)
}

// Text is the text a person sees in the element sel selects (CSS) of the page now open.
func Text(ctx context.Context, sel string) (string, error) {
	return chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
}
