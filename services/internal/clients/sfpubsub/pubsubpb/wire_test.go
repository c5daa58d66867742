package pubsubpb

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWireNumbers pins the field numbers cosell relies on to Salesforce's published definition, so an edit
// of the .proto (or a regeneration from a different one) that would break the real wire format fails here.
func TestWireNumbers(t *testing.T) {
	want := map[protoreflect.ProtoMessage]map[string]protoreflect.FieldNumber{
		&FetchRequest{}:   {"topic_name": 1, "replay_preset": 2, "replay_id": 3, "num_requested": 4, "auth_refresh": 5},
		&FetchResponse{}:  {"events": 1, "latest_replay_id": 2, "rpc_id": 3, "pending_num_requested": 4},
		&ConsumerEvent{}:  {"event": 1, "replay_id": 2},
		&ProducerEvent{}:  {"id": 1, "schema_id": 2, "payload": 3, "headers": 4},
		&SchemaInfo{}:     {"schema_json": 1, "schema_id": 2, "rpc_id": 3},
		&TopicInfo{}:      {"topic_name": 1, "tenant_guid": 2, "can_publish": 3, "can_subscribe": 4, "schema_id": 5, "rpc_id": 6},
		&PublishRequest{}: {"topic_name": 1, "events": 2, "auth_refresh": 3},
	}
	for msg, fields := range want {
		d := msg.ProtoReflect().Descriptor()
		if d.FullName().Parent() != "eventbus.v1" {
			t.Errorf("%s: package %s, want eventbus.v1", d.FullName(), d.FullName().Parent())
		}
		for name, num := range fields {
			f := d.Fields().ByName(protoreflect.Name(name))
			if f == nil || f.Number() != num {
				t.Errorf("%s.%s: got %v, want field number %d", d.FullName(), name, f, num)
			}
		}
	}
	if ReplayPreset_LATEST != 0 || ReplayPreset_EARLIEST != 1 || ReplayPreset_CUSTOM != 2 {
		t.Errorf("ReplayPreset values differ from the published LATEST=0, EARLIEST=1, CUSTOM=2")
	}
	if PubSub_ServiceDesc.ServiceName != "eventbus.v1.PubSub" {
		t.Errorf("service name %q", PubSub_ServiceDesc.ServiceName)
	}
	// A FetchRequest encodes as the real client's does: replay_id as bytes field 3.
	b, err := proto.Marshal(&FetchRequest{ReplayId: []byte{0xAB}})
	if err != nil || len(b) != 3 || b[0] != 3<<3|2 {
		t.Errorf("FetchRequest{replay_id} encodes as %x (%v), want 1a01ab", b, err)
	}
}
