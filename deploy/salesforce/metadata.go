// Package salesforce embeds this Salesforce DX source project (the custom fields and objects cosell needs)
// and reads it (ReadProject), so the Salesforce emulator's schema and the mapping's checks both come from
// exactly the files an admin deploys, read one way.
package salesforce

import "embed"

// Metadata is the project: sfdx-project.json and force-app/.
//
//go:embed sfdx-project.json force-app
var Metadata embed.FS
