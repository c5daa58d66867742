package platform

// The images are built from scratch (deploy/image): no /etc/ssl/certs. This bundle of Mozilla's roots is
// used only when the system has none, so the binaries reach Salesforce, Partner Center and Entra ID over
// TLS in the image and use the host's roots anywhere else.
import _ "golang.org/x/crypto/x509roots/fallback"
