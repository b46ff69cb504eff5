"""The fidelity benchmark: how well cheap scores (proxies, supernets, #params) rank architectures against a
strong reference protocol (``benchmark``), and the statistics that say so (``scoring``)."""
