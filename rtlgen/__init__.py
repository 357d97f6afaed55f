"""archgen.rtlgen"""
