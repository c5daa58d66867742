package deploytest

import (
	"context"
	"fmt"
	"github.com/nats-io/nats.go"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cosell-dev/cosell/contracts"
	"github.com/cosell-dev/cosell/services/internal/testkit"
	"github.com/cosell-dev/cosell/services/internal/testkit/stacktest"
)

// startCluster starts three JetStream servers clustered on loopback, as the NATS chart runs them, and
// waits for a JetStream meta leader.
func startCluster(t *testing.T) []*server.Server {
	t.Helper()
	// A JetStream cluster needs its routes configured up front, as the chart does: reserve three ports.
	var routes []*url.URL
	var ports []int
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: ln.Addr().String()})
		ln.Close()
	}
	var nodes []*server.Server
	for i := range 3 {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("nats-%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "cosell-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
		nodes = append(nodes, ns)
	}
	for i, ns := range nodes {
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatalf("node %d not ready", i)
		}
	}
	testkit.Eventually(t, 30*time.Second, "JetStream meta leader and full routes", func() (bool, string) {
		leader := false
		for _, ns := range nodes {
			leader = leader || ns.JetStreamIsLeader()
			if ns.NumRoutes() < 2 {
				return false, ns.Name() + " routes"
			}
		}
		return leader, "no meta leader"
	})
	return nodes
}

func clientURLs(nodes []*server.Server) string {
	var urls []string
	for _, ns := range nodes {
		if ns.Running() {
			urls = append(urls, ns.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// The pipeline runs on R3 streams and KV across a three-node cluster; the leader of the observed stream
// is killed in the middle of a burst of referrals; every referral still ends as exactly one Opportunity.
func TestR3PipelineLosesNothingWhenTheStreamLeaderDies(t *testing.T) {
	nodes := startCluster(t)
	urls := clientURLs(nodes)
	elog := &errorLog{}
	s := startStack(t, slog.New(elog), func(string) map[string]string {
		return map[string]string{"COSELL_NATS_URL": urls, "COSELL_STREAM_REPLICAS": "3", "COSELL_ACK_WAIT": "3s", "COSELL_MAX_DELIVER": "20"}
	})
	ctx := context.Background()

	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range contracts.Streams() {
		info, err := stream(t, js, st.Name).Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("%s is not R3 across the cluster: %+v", st.Name, info.Cluster)
		}
	}

	const total = 30
	var ids []string
	create := func(i int) {
		r, err := s.PC.SellerCreate(stacktest.SellerReferral(fmt.Sprintf("R3 deal %02d", i), float64(1000+i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	for i := range total / 2 {
		create(i)
	}
	// Kill the observed stream's leader while the first half is in flight.
	info, err := stream(t, js, contracts.StreamObserved).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killed := ""
	for _, ns := range nodes {
		if ns.Name() == info.Cluster.Leader {
			killed = ns.Name()
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	}
	if killed == "" {
		t.Fatalf("no node leads %s (leader %q)", contracts.StreamObserved, info.Cluster.Leader)
	}
	for i := total / 2; i < total; i++ {
		create(i)
	}

	testkit.Eventually(t, 90*time.Second, "every referral is exactly one opportunity after "+killed+" died", func() (bool, string) {
		missing, dup := 0, 0
		for _, id := range ids {
			switch n := len(stacktest.OpportunitiesFor(s, id)); {
			case n == 0:
				missing++
			case n > 1:
				dup++
			}
		}
		return missing == 0 && dup == 0, fmt.Sprintf("%d missing, %d duplicated", missing, dup)
	})
	after, err := stream(t, js, contracts.StreamObserved).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Cluster.Leader == "" || after.Cluster.Leader == killed {
		t.Fatalf("observed stream leader after the failure: %q (killed %s)", after.Cluster.Leader, killed)
	}
	for _, id := range ids {
		if n := len(stacktest.OpportunitiesFor(s, id)); n != 1 {
			t.Errorf("referral %s has %d opportunities", id, n)
		}
	}
}
