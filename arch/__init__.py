"""archgen.arch"""
