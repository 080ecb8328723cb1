package p2p

import "context"

// Peer-to-peer signalling: WebRTC offers, answers and ICE candidates, relayed to a user who may be written
// to (the rules of send) and who is online. Signals are not stored: a peer that is not there cannot answer
// an offer anyway, and a client whose direct channel fails keeps sending through the relay.

func (s *Service) signal(ctx context.Context, c caller, f *request) ([]byte, *WireError) {
	if werr := s.mayTalk(ctx, c.user, f.to); werr != nil {
		return nil, werr
	}
	rec, _, err := s.loadPresence(ctx, f.to)
	if err != nil {
		return nil, unavailable("cannot read presence", err)
	}
	if len(rec.Nodes) == 0 {
		return nil, wireErr(CodeOffline, "%q is offline; signals are not stored", clip(f.to))
	}
	s.publishTo(f.to, signalFrame(c.user, c.device, f.data), "", f.device)
	return okFrame(f.id), nil
}
