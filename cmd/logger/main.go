// Command logger is the logger actor process. The supervisor starts it through
// go-plugin; run bin/supervisor, not this.
package main

import (
	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
)

func main() { actor.ServeProcessor(actors.Logger{}) }
