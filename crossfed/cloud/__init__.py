"""The cloud tier: the scenarios against real AWS and Azure accounts (or anything reached the way
they are, such as `crossfed serve`), through the SDKs' standard credential chains."""
