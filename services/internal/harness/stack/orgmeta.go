package stack

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"

	metadata "github.com/cosell-dev/cosell/deploy/salesforce"
)

// TextField is a custom Text field of Opportunity that an org has besides the fields cosell deploys.
type TextField struct {
	Name   string // API name, ending in __c
	Label  string
	Length int
}

// WriteOrgMetadata writes to dir an SFDX project as an org's retrieved metadata would be: deploy/salesforce
// (what cosell deploys) plus the given custom Opportunity fields. Options.SFMetadataDir makes the
// Salesforce emulator that org, and mapping.Config.Metadata checks a mapping naming those fields against it.
func WriteOrgMetadata(dir string, fields ...TextField) error {
	if err := os.CopyFS(dir, metadata.Metadata); err != nil {
		return fmt.Errorf("org metadata: %w", err)
	}
	fieldsDir := filepath.Join(dir, "force-app", "main", "default", "objects", "Opportunity", "fields")
	for _, f := range fields {
		x := struct {
			XMLName  xml.Name `xml:"http://soap.sforce.com/2006/04/metadata CustomField"`
			FullName string   `xml:"fullName"`
			Label    string   `xml:"label"`
			Length   int      `xml:"length"`
			Required bool     `xml:"required"`
			Type     string   `xml:"type"`
		}{FullName: f.Name, Label: f.Label, Length: f.Length, Type: "Text"}
		b, err := xml.MarshalIndent(x, "", "    ")
		if err != nil {
			return err
		}
		file := filepath.Join(fieldsDir, f.Name+".field-meta.xml")
		if err := os.WriteFile(file, append([]byte(xml.Header), b...), 0o644); err != nil {
			return fmt.Errorf("org metadata: %w", err)
		}
	}
	return nil
}
