package e2e

import ()
