package sfemu

import (
	"fmt"
	"net/http"
	"strconv"
)

// The API versions the emulator serves. Salesforce lists every supported version at GET /services/data/
// (no session needed) and serves only those: versions 7.0–30.0 are retired and answer 410 GONE (Salesforce
// "API End-of-Life" in the REST API Developer Guide, and the knowledge article "Salesforce Platform API Versions
// 21.0 through 30.0 Retirement": "REST API returns 410: GONE"); a version newer than the org's release does not
// exist yet and answers 404 NOT_FOUND, as any unknown resource.
const (
	// LatestAPIVersion is the emulated release's version (Winter '25), the one go-salesforce v2.5.2 calls.
	LatestAPIVersion = 62
	// OldestAPIVersion is the oldest version still served since the Summer '25 retirement of 21.0–30.0.
	OldestAPIVersion = 31
)

// apiVersion is one entry of the versions list.
type apiVersion struct {
	Label   string `json:"label"`
	URL     string `json:"url"`
	Version string `json:"version"`
}

// releaseLabel names the release that introduced API version v: 31.0 was Summer '14 and each of the three
// releases a year adds one (Summer, Winter of the next year, Spring of the next year).
func releaseLabel(v int) string {
	n := v - OldestAPIVersion
	year := 14 + n/3
	switch n % 3 {
	case 0:
		return fmt.Sprintf("Summer '%02d", year)
	case 1:
		return fmt.Sprintf("Winter '%02d", year+1)
	}
	return fmt.Sprintf("Spring '%02d", year+1)
}

// versions is the body of GET /services/data/: oldest first, as Salesforce lists them.
func versions() []apiVersion {
	out := make([]apiVersion, 0, LatestAPIVersion-OldestAPIVersion+1)
	for v := OldestAPIVersion; v <= LatestAPIVersion; v++ {
		out = append(out, apiVersion{Label: releaseLabel(v), URL: fmt.Sprintf("/services/data/v%d.0", v),
			Version: fmt.Sprintf("%d.0", v)})
	}
	return out
}

// checkVersion refuses a version segment ("v62.0") the emulated org does not serve.
func checkVersion(seg string) *APIError {
	m := reVersion.FindStringSubmatch(seg)
	if m == nil || m[2] != "0" {
		return errNotFound()
	}
	major, _ := strconv.Atoi(m[1])
	switch {
	case major > LatestAPIVersion:
		return errNotFound()
	case major < OldestAPIVersion:
		return apiErr(http.StatusGone, "GONE",
			"The requested API version v%d.0 has been retired. Use a version from /services/data/ (v%d.0 to v%d.0).",
			major, OldestAPIVersion, LatestAPIVersion)
	}
	return nil
}
