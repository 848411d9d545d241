package supervisor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/robust/robust/internal/events"
)

// FuzzDecodeSup: whatever the supervisor's state key holds, decodeSup
// returns a state with a run number that can still be counted up and at
// most maxTampered tamperings, or an error; never a panic.
func FuzzDecodeSup(f *testing.F) {
	good, _ := json.Marshal(supState{Run: 3, Restarts: map[string]uint64{"worker": 2}, IDs: "0123456789ab",
		Tampered: []events.Tampered{{What: "NUMBERS", Op: events.OpPurged, Messages: 200}}, Started: map[string]bool{"worker": true}})
	f.Add(good)
	f.Add([]byte(`{"run":18446744073709551615,"completed":true}`))
	f.Add([]byte(`{"tampered":[` + strings.Repeat(`{"what":"x"},`, maxTampered) + `{"what":"y"}]}`))
	f.Add([]byte(`{"ids":"../../etc"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeSup(b)
		if err != nil {
			return
		}
		if st.Run > maxRun || len(st.Tampered) > maxTampered {
			t.Fatalf("run %d, %d tamperings taken", st.Run, len(st.Tampered))
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if st2, err := decodeSup(again); err != nil || st2.Run != st.Run || st2.IDs != st.IDs || len(st2.Tampered) != len(st.Tampered) {
			t.Fatalf("stored and read again: %+v, %v", st2, err)
		}
	})
}
