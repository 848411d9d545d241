// Command heartbeat is the heartbeat actor process. The supervisor starts it through
// go-plugin; run bin/supervisor, not this.
package main

import (
	"fmt"
	"os"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
)

func main() {
	if err := actor.ServeProducer(actors.Heartbeat{}); err != nil {
		fmt.Fprintf(os.Stderr, "heartbeat: %v\n", err)
		os.Exit(actor.ExitCode(err))
	}
}
