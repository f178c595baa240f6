"""Initializers: configs rebuild the same initializer (what load_model relies on)."""
def test_initializer_config_round_trip():
    from faltung import initializers
    for name in ["glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "lecun_normal",
                 "lecun_uniform", "random_normal", "zeros"]:
        init = initializers.get(name)
        again = initializers.get(initializers.serialize(init))
        assert type(again) is type(init) and again.get_config() == init.get_config()
