package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/suitetest"
)

// chromium finds a Chromium or Chrome binary; `make test` installs
// Debian's chromium when it can.
func chromium() string {
	if p := os.Getenv("LEADFLOW_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowser uses the web UI as a person would, in headless Chromium:
// submit the demo form, find the lead with its score and stage history,
// and see the funnel count it.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole suite; skipped with -short")
	}
	bin := chromium()
	if bin == "" {
		t.Skip("browser test skipped: no Chromium found (install Debian's chromium, or set LEADFLOW_CHROMIUM)")
	}
	s := suitetest.Start(t, suitetest.DataDir(t))
	// The demo form allows the gateway's own origin under "localhost".
	base := strings.Replace(s.Gateway, "127.0.0.1", "localhost", 1)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()

	const email = "grace.hopper@cobol.example"
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/form.html"),
		chromedp.WaitVisible(css("#demo-form")),
		chromedp.SendKeys(css("#first_name"), "Grace"),
		chromedp.SendKeys(css("#last_name"), "Hopper"),
		chromedp.SendKeys(css("#email"), email),
		chromedp.SendKeys(css("#company"), "Navy Labs"),
		chromedp.Click(css(`#demo-form button[type="submit"]`)),
		chromedp.WaitVisible(css("#thanks")),
	); err != nil {
		t.Fatalf("submit the demo form: %v", err)
	}
	thanks, err := chromedp.Run(ctx, chromedp.Text(css("#thanks")))
	if err != nil || !strings.Contains(thanks, "Thank you") {
		t.Fatalf("thank-you page says %q (%v)", thanks, err)
	}

	// The lead view: give it the key once (kept in localStorage), then wait
	// until the hand-raiser shows as an MQL, reloading as a person would.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/ui/leads.html"),
		chromedp.WaitVisible(css("#key")),
		chromedp.SendKeys(css("#key"), s.Key),
		chromedp.Click(css("#key-form button")),
		chromedp.WaitVisible(css("a.lead-link")),
	); err != nil {
		t.Fatalf("open the leads page: %v", err)
	}
	// Each look gets its own deadline, so a page that is not there yet
	// cannot hang the whole test.
	look := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 10*time.Second) }
	suitetest.Eventually(t, time.Minute, "the lead view to show the MQL stage", func() bool {
		ctx, cancel := look()
		defer cancel()
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/ui/leads.html"),
			chromedp.WaitVisible(css("a.lead-link")),
			chromedp.Click(css("a.lead-link")),
			chromedp.WaitVisible(css("#total-score")),
		)
		if err != nil {
			return false
		}
		title, _ := chromedp.Run(ctx, chromedp.Text(css("#lead-title")))
		history, _ := chromedp.Run(ctx, chromedp.Text(css("#history")))
		return strings.Contains(title, "Grace") && strings.Contains(history, "MQL")
	})

	suitetest.Eventually(t, time.Minute, "the funnel to count the MQL", func() bool {
		ctx, cancel := look()
		defer cancel()
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/ui/funnel.html"),
			chromedp.WaitVisible(css(`#funnel-chart rect[data-stage="MQL"]`)),
		)
		if err != nil {
			return false
		}
		count, err := chromedp.Run(ctx, chromedp.AttributeValue(css(`#funnel-chart rect[data-stage="MQL"]`), "data-count"))
		n, _ := strconv.Atoi(count.Value)
		return err == nil && n >= 1
	})

	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		dir := os.Getenv("LEADFLOW_SCREENSHOT_DIR") // keep the picture for a person to look at
		if dir == "" {
			dir = t.TempDir()
		}
		shot := filepath.Join(dir, "funnel.png")
		_ = os.WriteFile(shot, png, 0o644)
		t.Logf("funnel screenshot: %s", shot)
	}
}
