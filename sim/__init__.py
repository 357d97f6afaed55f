"""archgen.sim"""
