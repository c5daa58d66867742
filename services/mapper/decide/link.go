package decide

import "github.com/cosell-dev/cosell/contracts"

// side returns the link's state for one system, for updating in place.
func sideOf(l *contracts.Link, sys contracts.System) *contracts.Side {
	if sys == contracts.PartnerCenter {
		return &l.PC
	}
	return &l.SF
}

func idOf(l contracts.Link, sys contracts.System) string {
	if sys == contracts.PartnerCenter {
		return l.ReferralID
	}
	return l.OpportunityID
}

func setIDOf(l *contracts.Link, sys contracts.System, id string) {
	if sys == contracts.PartnerCenter {
		l.ReferralID = id
	} else {
		l.OpportunityID = id
	}
}
