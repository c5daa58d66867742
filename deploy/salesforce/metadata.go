// Package salesforce embeds this Salesforce DX source project (the custom fields and objects cosell needs),
// so the Salesforce emulator loads its schema from exactly the files an admin deploys: the two can never
// disagree.
package salesforce

import "embed"

// Metadata is the project: sfdx-project.json and force-app/.
//
//go:embed sfdx-project.json force-app
var Metadata embed.FS
