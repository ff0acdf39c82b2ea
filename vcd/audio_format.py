"""The audio format inside vcd: mono float32 samples in [-1, 1] at one sample rate.

Sources convert to it, and the VAD, features, model and training read it.  This module
imports nothing, so that modules which only need the rate (the VAD, the audio sources) do
not pull in torch.
"""

SAMPLE_RATE_HZ = 16000
