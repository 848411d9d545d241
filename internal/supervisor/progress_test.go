package supervisor

import (
	"strings"
	"testing"
)

// A log line written while the progress line is shown clears it first and
// draws it again after: the two never share a line.
func TestTerminalKeepsLinesApart(t *testing.T) {
	var out strings.Builder
	term := &Terminal{W: &out}
	term.Draw("100 values/s  ETA 22s")
	if _, err := term.Write([]byte("time=now level=WARN msg=x\n")); err != nil {
		t.Fatal(err)
	}
	term.Draw("200 values/s  ETA 21s")
	term.Done()
	want := "\r\x1b[K100 values/s  ETA 22s" + "\r\x1b[K" + "time=now level=WARN msg=x\n" + "100 values/s  ETA 22s" + "\r\x1b[K200 values/s  ETA 21s" + "\n"
	if got := out.String(); got != want {
		t.Fatalf("terminal got\n%q\nwant\n%q", got, want)
	}
	// What a person sees: no log line glued to the progress line.
	for _, line := range strings.Split(out.String(), "\n") {
		shown := line[strings.LastIndex(line, "\r\x1b[K")+1:]
		if strings.Contains(shown, "ETA") && strings.Contains(shown, "level=") {
			t.Fatalf("a log line stuck to the progress line: %q", shown)
		}
	}
}
